/**
 * prisn.toml: a project's deployment settings. `parsePrisnToml` reads and validates one and
 * turns every mistake into a single line naming the file, the line, the key and what is allowed.
 * Durations and quantities stay as the strings the user wrote; see docs/prisn-toml.md.
 *
 * This file holds the public names; the code is in core/prisn_toml/: types.ts, defaults.ts,
 * name.ts, keys.ts, parse.ts (the entry and the rules between keys), _schema.ts (zod),
 * _messages.ts (issues as one line, suggestions for misspelt keys) and _key_lines.ts (the line
 * of a key).
 *
 * @module
 */

export { parsePrisnToml } from "./prisn_toml/parse.ts";
export { PRISN_TOML_DEFAULTS } from "./prisn_toml/defaults.ts";
export { PRISN_TOML_KEYS } from "./prisn_toml/keys.ts";
export { validateName } from "./prisn_toml/name.ts";
export type {
  DeploymentType,
  Deps,
  HealthCheck,
  History,
  LogSettings,
  PrisnToml,
  Resources,
  RestartPolicy,
  RolloutSettings,
} from "./prisn_toml/types.ts";
