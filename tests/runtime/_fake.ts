import { join } from "node:path";
import { paths, versionDir } from "../../core/paths.ts";
import type { PrisnToml } from "../../core/prisn_toml.ts";
import { Records } from "../../core/records.ts";
import type { DeploySpec } from "../../core/spec.ts";
import { type AgentContext, createContext } from "../../runtime/context.ts";
import { type FakeBehavior, FakeDriver, type FakeStart } from "../../runtime/fake_driver.ts";
import type { Launch } from "../../runtime/launch.ts";

/** A temp home with real records and a fake driver; everything is stopped and removed after. */
export async function withFakes(
  behave: (start: FakeStart) => FakeBehavior,
  fn: (t: { ctx: AgentContext; driver: FakeDriver; dir: string }) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "prisn-fake-" });
  const records = new Records(join(dir, "prisn.db"));
  const ctx = createContext(paths(dir), records, "test-node");
  const driver = new FakeDriver(behave);
  try {
    await fn({ ctx, driver, dir });
  } finally {
    await driver.stopAll();
    await ctx.output?.close();
    records.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** A service or job spec as resolveSpec would make it, from prisn.toml keys. */
export function fakeSpec(toml: PrisnToml & { name: string }): DeploySpec {
  return {
    type: toml.schedule ? "cronjob" : toml.port !== undefined ? "service" : "service",
    entrypoint: "main.sh",
    runtime: "bash",
    args: [],
    env: {},
    replicas: 1,
    ...toml,
  } as DeploySpec;
}

/** Records a version in desired state with an (empty) stored folder, as a deploy would. */
export async function putFakeVersion(ctx: AgentContext, spec: DeploySpec, version: string) {
  await Deno.mkdir(versionDir(ctx.paths, spec.name, version), { recursive: true });
  await ctx.desired.putVersion({
    deployment: spec.name,
    version,
    spec,
    source: { kind: "dir", location: "/fake" },
    files: 0,
    bytes: 0,
  });
}

/** A launch whose command the fake driver never runs. */
export function fakeLaunch(dir: string): Launch {
  return {
    command: "/fake/app",
    args: [],
    cwd: dir,
    env: {},
    interpreter: "/fake/app",
    interpreterVersion: "0",
    envs: [],
    skipped: [],
    redact: [],
  };
}

/** Events of a deployment, oldest first, as "Kind: message". */
export function events(ctx: AgentContext, deployment: string): string[] {
  return ctx.records.listEvents(deployment, 1000).reverse().map((e) => `${e.kind}: ${e.message}`);
}
