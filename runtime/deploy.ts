import { join } from "node:path";
import { deploymentNotFound, invalid, PrisnError } from "../core/errors.ts";
import { unpackVersion } from "../core/archive.ts";
import { readConfigFile } from "../core/fs.ts";
import { parsePrisnToml, type PrisnToml } from "../core/prisn_toml.ts";
import { validateSchedule } from "../core/schedule.ts";
import {
  defaultName,
  type DeployFlags,
  type DeploySpec,
  parseReplicas,
  resolveSpec,
  runSpecOf,
} from "../core/spec.ts";
import type { SourceInfo } from "../core/types.ts";
import { type CollectOptions, collectPackage, type Package, versionId } from "../core/version.ts";
import { formatDuration } from "../core/duration.ts";
import { formatBytes } from "../core/quantity.ts";
import type { AgentContext } from "./context.ts";
import { isDiskFull } from "./disk_health.ts";
import type { Launch } from "./launch.ts";
import { NotReadyError } from "./service.ts";
import { InstallError } from "./envs.ts";
import { fetchGit, isGitUrl, redactUrl } from "./git_source.ts";
import { checkHomeReachable, resolveRunAs } from "./run_as.ts";
import type { Supervisor } from "./supervisor.ts";
import { settingsOf } from "../core/settings.ts";
import {
  DEFAULT_NAMESPACE,
  deploymentKey,
  displayKey,
  nameOf,
  namespaceOf,
  validateNamespace,
} from "../core/namespace.ts";

export interface DeployRequest {
  /** An absolute path (folder or file) or a git URL. */
  source: string;
  /** Where an uploaded folder came from (the client's path): recorded as the source, named after. */
  origin?: string;
  ref?: string;
  path?: string;
  /** The namespace to deploy into. @default DEFAULT_NAMESPACE */
  namespace?: string;
  flags: DeployFlags;
}

export interface DeployResult {
  /** Inside the agent the deployment's key (core/namespace.ts); on the wire its bare name. */
  name: string;
  /** On the wire: the deployment's namespace. */
  namespace?: string;
  version: string;
  type: DeploySpec["type"];
  unchanged: boolean;
  port?: number;
  replicas: number;
  runId?: string;
}

export type Step = "Package" | "Version" | "Store" | "Record" | "Prepare" | "Activate";
export type Progress = (step: Step, detail: string) => void;

/**
 * Package → Version → Store → Record → Prepare → Activate, reporting each step. When `signal`
 * aborts (the client went away: Ctrl-C) before Prepare, the deploy stops and takes back what it
 * stored and recorded, so an interrupted deploy leaves nothing; from Prepare on it runs to the end
 * (a rollout is not left half done).
 */
export async function deploy(
  ctx: AgentContext,
  supervisor: Supervisor,
  request: DeployRequest,
  progress: Progress,
  signal?: AbortSignal,
): Promise<DeployResult> {
  const fetched = await packageSource(ctx, request);
  try {
    return await deployPackage(ctx, supervisor, request, fetched, progress, signal);
  } finally {
    if (fetched.cleanup) await fetched.cleanup();
  }
}

/**
 * Deploys a folder a remote CLI uploaded as a core/archive.ts archive: unpacked (paths checked,
 * within the archive caps) into a temp folder under state/, deployed from there like a local
 * folder, removed afterwards. The client's path is recorded as the source.
 */
export async function deployUpload(
  ctx: AgentContext,
  supervisor: Supervisor,
  request: DeployRequest,
  archive: Uint8Array,
  progress: Progress,
  signal?: AbortSignal,
): Promise<DeployResult> {
  if (isGitUrl(request.source)) {
    throw invalid("a git source is fetched by the agent: do not upload it");
  }
  await Deno.mkdir(ctx.paths.state, { recursive: true });
  const temp = await Deno.makeTempDir({ dir: ctx.paths.state, prefix: "upload-" });
  try {
    const dir = join(temp, "src");
    await unpackVersion(archive, dir);
    const uploaded = { ...request, source: dir, origin: request.source };
    return await deploy(ctx, supervisor, uploaded, progress, signal);
  } finally {
    await Deno.chmod(temp, 0o700).catch(() => {});
    await Deno.remove(temp, { recursive: true }).catch(() => {});
  }
}

interface Fetched {
  pkg: Package;
  toml?: PrisnToml;
  source: SourceInfo;
  name: string;
  cleanup?: () => Promise<void>;
}

async function packageSource(ctx: AgentContext, request: DeployRequest): Promise<Fetched> {
  if (isGitUrl(request.source)) {
    await Deno.mkdir(ctx.paths.state, { recursive: true });
    const temp = await Deno.makeTempDir({ dir: ctx.paths.state, prefix: "git-" });
    const cleanup = () => Deno.remove(temp, { recursive: true }).catch(() => {});
    try {
      const { dir, source } = await fetchGit(request.source, {
        ref: request.ref,
        path: request.path,
        dest: join(temp, "src"),
      });
      const pkg = await collectPackage(dir, packageOptions(ctx, request));
      const repoName = source.url.replace(/\.git$/, "").split(/[/:]/).pop() ?? "app";
      return {
        pkg,
        toml: await readToml(dir),
        source: {
          kind: "git",
          location: source.url,
          ref: source.ref,
          path: source.path,
          commit: source.commit,
        },
        name: defaultName(request.path ?? repoName, "dir"),
        cleanup,
      };
    } catch (e) {
      await cleanup();
      throw storageError(e, `fetch ${redactUrl(request.source)}`);
    }
  }
  if (request.ref || request.path) {
    throw new PrisnError(
      "INVALID",
      "--ref and --path apply to git URLs only: drop them for a local path",
    );
  }
  const pkg = await collectPackage(request.source, packageOptions(ctx, request));
  return {
    pkg,
    toml: pkg.kind === "dir" ? await readToml(pkg.root) : undefined,
    source: { kind: pkg.kind, location: request.origin ?? request.source },
    name: defaultName(request.origin ?? request.source, pkg.kind),
  };
}

function packageOptions(ctx: AgentContext, request: DeployRequest): CollectOptions {
  return { maxBytes: ctx.maxPackageBytes, followLinks: request.flags.followLinks === true };
}

async function readToml(dir: string): Promise<PrisnToml | undefined> {
  const text = await readConfigFile(join(dir, "prisn.toml"), { label: "prisn.toml" });
  return text === undefined ? undefined : parsePrisnToml(text, "prisn.toml");
}

async function deployPackage(
  ctx: AgentContext,
  supervisor: Supervisor,
  request: DeployRequest,
  { pkg, toml, source, name }: Fetched,
  progress: Progress,
  signal?: AbortSignal,
): Promise<DeployResult> {
  const origin = source.kind === "git"
    ? `${source.location}${source.ref ? `@${source.ref}` : ""} (${source.commit?.slice(0, 12)})`
    : `${source.kind === "dir" ? "folder" : "file"} ${source.location}`;
  const report = async (step: Step, detail: string) => {
    progress(step, detail);
    await holdForTest(ctx, step);
  };
  const followed = pkg.followed?.length
    ? `; followed ${pkg.followed.length} link(s) outside the folder (--follow-links): ` +
      pkg.followed.map((f) => `${f.path} -> ${f.target}`).join(", ")
    : "";
  await report(
    "Package",
    `${pkg.files.length} file(s), ${formatBytes(pkg.bytes)} from ${origin}${followed}`,
  );

  const spec = resolveSpec({
    toml,
    flags: request.flags,
    files: pkg.files.map((f) => f.path),
    defaultName: name,
  });
  // From here on the spec's name is the deployment's key; its version does not depend on the
  // namespace (the same folder is the same version in every namespace, and after the migration).
  const bareName = spec.name;
  spec.name = deploymentKey(validateNamespace(request.namespace ?? DEFAULT_NAMESPACE), bareName);
  const shown = displayKey(spec.name);
  if (spec.type === "cronjob") {
    spec.timezone ??= Intl.DateTimeFormat().resolvedOptions().timeZone ?? "UTC";
    validateSchedule(spec.schedule!, spec.timezone);
  }
  // Refused before anything is stored: prepare checks again on every node that runs it.
  const runAs = await resolveRunAs(spec);
  if (runAs) await checkHomeReachable(runAs, ctx.paths.home);
  // From here on, one change per deployment at a time (deploy, rollback, scale, delete).
  return await supervisor.exclusive(spec.name, async () => {
    const version = versionId(pkg.files, runSpecOf({ ...spec, name: bareName }));
    const existing = ctx.desired.getDeployment(spec.name);
    if (existing && existing.type !== spec.type) {
      throw new PrisnError(
        "CONFLICT",
        `"${shown}" is deployed as a ${existing.type}, not a ${spec.type}: ` +
          `delete it first or deploy under another --name`,
      );
    }
    if (spec.port !== undefined) portFree(ctx, spec.name, spec.port);
    const replicas = request.flags.replicas !== undefined || toml?.replicas !== undefined
      ? spec.replicas
      : existing?.replicas ?? spec.replicas;
    if (existing?.version === version) {
      await report("Version", `${version} (unchanged)`);
      if (spec.type === "service" && replicas !== existing.replicas) {
        await ctx.desired.setReplicas(spec.name, replicas, { expect: existing.revision });
        await supervisor.scale(spec.name, replicas);
        await report("Activate", `scaled to ${replicas} replica(s)`);
      }
      return {
        name: spec.name,
        version,
        type: spec.type,
        unchanged: true,
        port: spec.port,
        replicas,
      };
    }
    const known = ctx.desired.getVersion(spec.name, version);
    await report("Version", `${version} (${known ? `seen before, ${known.status}` : "new"})`);
    /** Takes back what this deploy stored and recorded, if the client went away. */
    const checkCancelled = async (wrote: boolean, recorded: boolean) => {
      if (!signal?.aborted) return;
      if (recorded && !known) {
        if (existing) await ctx.desired.deleteVersion(spec.name, version);
        else await ctx.desired.deleteDeployment(spec.name);
      }
      if (!existing) await ctx.artifacts.remove(spec.name); // no record: nothing else is there
      else if (wrote) await ctx.artifacts.remove(spec.name, version);
      throw new PrisnError("FAILED", `the deploy of ${shown} was cancelled: nothing changed`);
    };
    await checkCancelled(false, false);

    let wrote = false;
    try {
      wrote = await ctx.artifacts.put(spec.name, version, pkg, { signal });
    } catch (e) {
      await checkCancelled(false, false); // stopped while copying: nothing was kept
      if (!existing) await ctx.artifacts.remove(spec.name).catch(() => {});
      throw storageError(e, `store ${version}`);
    }
    await report(
      "Store",
      `${wrote ? "stored" : "already stored"} in deployments/${spec.name}/${version}`,
    );
    await checkCancelled(wrote, false);

    const versionRecord = {
      deployment: spec.name,
      version,
      spec,
      source,
      files: pkg.files.length,
      bytes: pkg.bytes,
    };
    try {
      await ctx.desired.putVersion(versionRecord);
    } catch (e) {
      if (!existing) await ctx.artifacts.remove(spec.name).catch(() => {});
      else if (wrote) await ctx.artifacts.remove(spec.name, version).catch(() => {});
      throw storageError(e, `record ${version}`);
    }
    await report("Record", `version ${version} recorded`);
    await checkCancelled(wrote, true);

    let launch;
    try {
      launch = await supervisor.launch(spec, version);
    } catch (e) {
      // pip, npm or venv on a full disk: one line says so (the env was removed half built).
      const full = isDiskFull(e) ||
        (e instanceof InstallError && isDiskFull({ message: e.detail }));
      if (e instanceof InstallError && !full) {
        progress("Prepare", `failed; the installer's last lines:\n${e.detail}`);
      }
      if (!existing) {
        await bestEffort(ctx.desired.deleteDeployment(spec.name)); // nothing was ever active
        await ctx.artifacts.remove(spec.name);
      } else await bestEffort(ctx.desired.setVersionStatus(spec.name, version, "failed"));
      if (!full) throw e;
      throw diskFull(
        `build the environment of ${version}`,
        existing ? `${existing.version} runs as before` : "nothing changed",
        e,
      );
    }
    await report("Prepare", describePrepared(spec, launch));

    const result: DeployResult = {
      name: spec.name,
      version,
      type: spec.type,
      unchanged: false,
      port: spec.port,
      replicas,
    };
    /**
     * Records a rolled-out service's activation. On a full disk the rollout is undone first: the
     * new replicas serve but the records could not say so, so the old version comes back (a
     * first deploy stops), and what runs is what the records say, now and after a restart.
     */
    const activateOrUndo = async () => {
      await holdForTest(ctx, "RolledOut");
      try {
        await activateRecord(ctx, spec, version, replicas, source, existing?.revision ?? 0);
      } catch (e) {
        if (!isDiskFull(e)) throw e;
        if (existing) {
          const old = ctx.desired.getVersion(spec.name, existing.version)!;
          try {
            await supervisor.rolloutService(old.spec, existing.version, existing.replicas);
          } catch (undo) {
            throw storageError(
              e,
              `activate ${version}`,
              `rolling back to ${existing.version} failed too: ${(undo as Error).message}`,
            );
          }
          ctx.event(spec.name, "RolloutUndone", `${version} could not be recorded as active`);
        } else {
          await supervisor.remove(spec.name);
          await bestEffort(ctx.desired.deleteDeployment(spec.name));
          await ctx.artifacts.remove(spec.name).catch(() => {});
        }
        throw storageError(
          e,
          `activate ${version}`,
          existing ? `${existing.version} serves again` : `${shown} is not deployed`,
        );
      }
    };
    if (spec.type === "service") {
      try {
        await supervisor.rolloutService(spec, version, replicas);
      } catch (e) {
        if (e instanceof NotReadyError && e.lines.length) {
          progress(
            "Activate",
            `${e.replica} not ready; its last stderr lines:\n${e.lines.join("\n")}`,
          );
        }
        if (existing) {
          await bestEffort(ctx.desired.setVersionStatus(spec.name, version, "failed"));
          ctx.event(spec.name, "RolloutFailed", (e as Error).message);
        } else if (e instanceof PrisnError && e.code === "FAILED") {
          // The first version: it stays, restarting.
          await activateOrUndo();
          ctx.event(spec.name, "NotReady", (e as Error).message);
        } else {
          await ctx.desired.deleteDeployment(spec.name);
          await ctx.artifacts.remove(spec.name);
        }
        throw e;
      }
      await activateOrUndo();
      await report("Activate", await readyEverywhere(ctx, supervisor, spec, version, replicas));
    } else {
      try {
        await activateRecord(ctx, spec, version, replicas, source, existing?.revision ?? 0);
      } catch (e) {
        if (!existing) await ctx.artifacts.remove(spec.name).catch(() => {});
        throw storageError(e, `activate ${version}`);
      }
      if (spec.type === "job") {
        const runId = await supervisor.submitRun(spec.name, { trigger: "deploy" });
        result.runId = runId;
        await report("Activate", `job started as ${runId}`);
      } else {
        await report(
          "Activate",
          `cronjob scheduled "${spec.schedule}"${spec.timezone ? ` (${spec.timezone})` : ""}`,
        );
      }
    }
    ctx.event(spec.name, "Deployed", `${version} deployed`);
    return result;
  });
}

/**
 * Refuses (CONFLICT, before anything is stored) a port another deployment's active version
 * serves: ports are the node's, whatever the namespace. Another namespace's deployment is not
 * named.
 */
function portFree(ctx: AgentContext, key: string, port: number): void {
  for (const d of ctx.desired.listDeployments()) {
    if (d.name === key || ctx.desired.getVersion(d.name, d.version)?.spec.port !== port) continue;
    const holder = namespaceOf(d.name) === namespaceOf(key)
      ? `deployment "${nameOf(d.name)}"`
      : "a deployment in another namespace";
    throw new PrisnError(
      "CONFLICT",
      `port ${port} is taken by ${holder}: pick another --port (nothing changed)`,
    );
  }
}

/** A full disk as one line that says what to do; any other error as it is. */
function storageError(error: unknown, what: string, state = "nothing changed"): unknown {
  return isDiskFull(error) ? diskFull(what, state, error) : error;
}

function diskFull(what: string, state: string, cause: unknown, retry = "deploy again"): PrisnError {
  return new PrisnError(
    "UNAVAILABLE",
    `cannot ${what}: the disk under PRISN_HOME is full; free some space and ${retry} (${state})`,
    { cause },
  );
}

/**
 * A record of a failure (a version marked failed) that must not hide the failure itself: on a
 * full disk it cannot be written, and the deploy's own error is the one to show.
 */
async function bestEffort(write: Promise<unknown>): Promise<void> {
  await write.catch((e) => {
    if (!isDiskFull(e)) throw e;
  });
}

/**
 * A test hook, inert unless the agent runs with PRISN_TEST_HOOKS=1: when the file
 * PRISN_HOME/state/test-hold-after names `point` (a step, or "RolledOut": a service's rollout
 * done, its activation not yet recorded), the deploy stops right after it (and writes
 * state/test-held), so a test can kill the agent, or fill the disk, at exactly that point. It goes
 * on once the file no longer names the point.
 */
async function holdForTest(ctx: AgentContext, point: Step | "RolledOut"): Promise<void> {
  try {
    if (Deno.env.get("PRISN_TEST_HOOKS") !== "1") return;
  } catch {
    return; // no env permission: no hooks
  }
  const wanted = () =>
    Deno.readTextFile(join(ctx.paths.state, "test-hold-after")).then((t) => t.trim(), () => "");
  if (await wanted() !== point) return;
  await Deno.writeTextFile(join(ctx.paths.state, "test-held"), point);
  while (await wanted() === point) await new Promise((r) => setTimeout(r, 100));
}

async function activateRecord(
  ctx: AgentContext,
  spec: DeploySpec,
  version: string,
  replicas: number,
  source: SourceInfo,
  /** The revision the change was decided on (0: the deployment is new). */
  expect: number,
): Promise<void> {
  await ctx.desired.activate(spec.name, version, replicas, { expect });
  await ctx.artifacts.setCurrent(spec.name, version, {
    name: spec.name,
    version,
    type: spec.type,
    source,
  });
}

/**
 * Re-activates an earlier version (rollback): the previous one by deploy time, or `version`.
 * Services roll the same way a deploy does.
 */
export async function rollback(
  ctx: AgentContext,
  supervisor: Supervisor,
  name: string,
  target?: string,
): Promise<DeployResult> {
  const d = ctx.desired.getDeployment(name);
  if (!d) throw deploymentNotFound(name);
  const versions = ctx.desired.listVersions(name);
  const to = target
    ? versions.find((v) => v.version === target)
    : versions.find((v) => v.version !== d.version && v.status === "superseded");
  if (!to) {
    throw new PrisnError(
      "NOT_FOUND",
      target
        ? `version "${target}" of ${displayKey(name)} not found: see prisn history ${
          displayKey(name)
        }`
        : `${displayKey(name)} has no earlier version to roll back to: see prisn history ${
          displayKey(name)
        }`,
    );
  }
  if (to.version === d.version) {
    return {
      name,
      version: to.version,
      type: d.type,
      unchanged: true,
      replicas: d.replicas,
      port: to.spec.port,
    };
  }
  if (d.type === "service") {
    await supervisor.rolloutService(to.spec, to.version, d.replicas);
  }
  try {
    await activateRecord(ctx, to.spec, to.version, d.replicas, to.source, d.revision);
  } catch (e) {
    if (!isDiskFull(e)) throw e;
    if (d.type === "service") { // as in a deploy: what runs is what the records say
      const from = ctx.desired.getVersion(name, d.version)!;
      await supervisor.rolloutService(from.spec, d.version, d.replicas);
    }
    throw diskFull(
      `roll ${displayKey(name)} back to ${to.version}`,
      `${d.version} stays active`,
      e,
      "try again",
    );
  }
  ctx.event(name, "RolledBack", `rolled back from ${d.version} to ${to.version}`);
  return {
    name,
    version: to.version,
    type: d.type,
    unchanged: false,
    replicas: d.replicas,
    port: to.spec.port,
  };
}

/** Sets a service's replica count; 0 stops it but keeps it deployed. */
export async function scale(
  ctx: AgentContext,
  supervisor: Supervisor,
  name: string,
  value: string | number,
): Promise<number> {
  const replicas = parseReplicas(value);
  const d = ctx.desired.getDeployment(name);
  if (!d) throw deploymentNotFound(name);
  if (d.type !== "service") {
    throw new PrisnError(
      "INVALID",
      `${displayKey(name)} is a ${d.type}; only services have replicas to scale`,
    );
  }
  await ctx.desired.setReplicas(name, replicas, { expect: d.revision });
  if (!supervisor.services.has(name)) {
    const spec = ctx.desired.getVersion(name, d.version)!.spec;
    await supervisor.rolloutService(spec, d.version, replicas);
  } else {
    await supervisor.scale(name, replicas);
  }
  ctx.event(name, "Scaled", `scaled from ${d.replicas} to ${replicas} replica(s)`);
  return replicas;
}

/** "bash 5.2.15, node env node-… (built in 8.1s)", "python3 3.11.2, no dependencies". */
function describePrepared(spec: DeploySpec, launch: Launch): string {
  const parts = [
    spec.runtime ? `${spec.runtime} ${launch.interpreterVersion}` : `command ${spec.command![0]}`,
    ...launch.envs.map((e) =>
      `${e.kind} env ${e.id} (${e.reused ? "reused" : `built in ${formatDuration(e.ms)}`})`
    ),
    ...launch.skipped.map((kind) => `${kind} dependencies skipped ([deps] ${kind} = false)`),
  ];
  if (launch.envs.length === 0 && launch.skipped.length === 0) parts.push("no dependencies");
  return parts.join(", ");
}

/** How often a cluster deploy looks at the other nodes' replicas (their heartbeats). */
const CLUSTER_READY_POLL_MS = 250;

/**
 * "N/N replica(s) ready": on one node, this node's; in a cluster, once the other nodes' shares
 * run the version too (their heartbeats say so), waiting up to the readiness timeout for them.
 */
async function readyEverywhere(
  ctx: AgentContext,
  supervisor: Supervisor,
  spec: DeploySpec,
  version: string,
  replicas: number,
): Promise<string> {
  const here = () =>
    supervisor.services.get(spec.name)?.status().filter((r) => r.ready && r.version === version)
      .length ?? 0;
  const members = ctx.members;
  if (!members) return `${here()}/${replicas} replica(s) ready`;
  const count = () => {
    const remote = members.remoteReplicas().filter((r) =>
      r.deployment === spec.name && r.ready && r.version === version
    );
    return { ready: here() + remote.length, nodes: new Set(remote.map((r) => r.node)).size };
  };
  const deadline = Date.now() + settingsOf(spec).readinessTimeoutMs;
  let now = count();
  while (now.ready < replicas && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, CLUSTER_READY_POLL_MS));
    now = count();
  }
  const nodes = now.nodes + (here() > 0 ? 1 : 0);
  return `${now.ready}/${replicas} replica(s) ready on ${nodes} node(s)` +
    (now.ready < replicas ? " (the others are still starting)" : "");
}
