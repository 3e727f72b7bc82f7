/**
 * prisn as a library: the pieces the CLI is built from, for embedding or tooling.
 * @module
 */
export { PrisnError } from "./core/errors.ts";
export type { ErrorCode } from "./core/errors.ts";
export { defaultHome, paths } from "./core/paths.ts";
export type { Paths } from "./core/paths.ts";
export { collectPackage, versionId } from "./core/version.ts";
export { resolveSpec } from "./core/spec.ts";
export type { DeployFlags, DeploySpec } from "./core/spec.ts";
export { parsePrisnToml, PRISN_TOML_KEYS, validateName } from "./core/prisn_toml.ts";
export type { PrisnToml } from "./core/prisn_toml.ts";
export { decideCron, nextFireTimes, validateSchedule } from "./core/schedule.ts";
export { Records } from "./core/records.ts";
export type * from "./core/types.ts";
export { Agent } from "./runtime/agent.ts";
export type { AgentOptions } from "./runtime/agent.ts";
export { AgentClient } from "./runtime/client.ts";
export { TcpProxy } from "./runtime/proxy.ts";
export { main } from "./main.ts";
