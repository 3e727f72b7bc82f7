import assert from "node:assert/strict";
import { PrisnError } from "../../core/errors.ts";
import { exists } from "../../core/fs.ts";
import {
  cleanupStaleGroups,
  describeLimits,
  detectEnforcement,
  LIMIT_SETUP_EXIT_CODE,
  LimitGroup,
  parseCgroupMounts,
  type WrappedCommand,
} from "../../runtime/limits.ts";
import { killGroup } from "../../runtime/process.ts";
import { alive, waitFor } from "../_helpers.ts";

const MiB = 1024 * 1024;
const HOG = new URL("../fixtures/hog.py", import.meta.url).pathname;
const PYTHON = await findPython();
const HOST = await probeHost();
const CGROUPS = HOST === "cgroup-v1" || HOST === "cgroup-v2";
const LINUX = Deno.build.os === "linux";

console.log(`limits_test: enforcement on this host is ${HOST}`);
if (!CGROUPS) console.log("limits_test: skipping cgroup tests: no writable memory+cpu cgroups");
if (!PYTHON) console.log("limits_test: skipping python tests: python3 not found");

let rootCounter = 0;

/** A cgroup root of this test's own, so parallel test files never touch each other's groups. */
function testRoot(): string {
  return `prisn-test-${Deno.pid}-${rootCounter++}`;
}

async function removeRoot(root: string): Promise<void> {
  if (CGROUPS) await cleanupStaleGroups(new Set(), { root, removeRoot: true });
}

async function probeHost() {
  const root = `prisn-test-${Deno.pid}-probe`;
  const enforcement = await detectEnforcement(undefined, { root });
  await cleanupStaleGroups(new Set(), { root, removeRoot: true });
  return enforcement;
}

async function findPython(): Promise<string | undefined> {
  try {
    const { success, stdout } = await new Deno.Command("python3", {
      args: ["-c", "import sys; print(sys.executable)"],
      stdout: "piped",
      stderr: "null",
    }).output();
    return success ? new TextDecoder().decode(stdout).trim() : undefined;
  } catch {
    return undefined;
  }
}

function spawn(cmd: WrappedCommand): Deno.ChildProcess {
  return new Deno.Command(cmd.command, {
    args: cmd.args,
    detached: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/** Runs `cmd` detached to the end (killing its process group after `timeoutMs`). */
async function run(cmd: WrappedCommand, timeoutMs = 30_000) {
  const child = spawn(cmd);
  const timer = setTimeout(() => killGroup(child.pid, "SIGKILL"), timeoutMs);
  try {
    const output = await child.output();
    const decoder = new TextDecoder();
    return {
      status: { code: output.code, signal: output.signal, success: output.success },
      stdout: decoder.decode(output.stdout),
      stderr: decoder.decode(output.stderr),
    };
  } finally {
    clearTimeout(timer);
    killGroup(child.pid, "SIGKILL");
  }
}

/** /proc/PID/stat after the command name: state, ppid, pgrp, session, …; undefined if gone. */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return undefined;
  }
}

async function procs(group: LimitGroup): Promise<number[]> {
  const text = await Deno.readTextFile(`${group.paths[0]}/cgroup.procs`);
  return text.split("\n").filter((line) => line !== "").map(Number);
}

/** Starts `sleep` in `group` plus a second `sleep` that left the process group with setsid. */
async function startWithEscapee(group: LimitGroup) {
  const pidFile = await Deno.makeTempFile();
  const child = spawn(group.wrap("/bin/sh", [
    "-c",
    'setsid sleep 300 & echo $! > "$1"; exec sleep 300',
    "sh",
    pidFile,
  ]));
  await waitFor(async () => (await Deno.readTextFile(pidFile)).trim() !== "", {
    what: "the escaped process to start",
  });
  const escapee = Number((await Deno.readTextFile(pidFile)).trim());
  await Deno.remove(pidFile);
  await waitFor(() => statFields(escapee)?.[3] === String(escapee), {
    what: "the escaped process to lead its own session",
  });
  return { child, escapee };
}

Deno.test("detectEnforcement() answers none when no limit is asked", async () => {
  assert.equal(await detectEnforcement({}), "none");
});

Deno.test("detectEnforcement() names one enforcement for this host", () => {
  assert.ok(["cgroup-v2", "cgroup-v1", "rlimit", "none"].includes(HOST));
  if (LINUX) assert.notEqual(HOST, "none");
});

Deno.test("parseCgroupMounts() finds v1 controllers and the unified mount", () => {
  const mounts = parseCgroupMounts([
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755",
    "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct",
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory",
    "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd",
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw",
  ].join("\n"));
  assert.equal(mounts.unified, "/sys/fs/cgroup/unified");
  assert.equal(mounts.v1.memory, "/sys/fs/cgroup/memory");
  assert.equal(mounts.v1.cpu, "/sys/fs/cgroup/cpu,cpuacct");
  assert.equal(mounts.v1.cpuacct, "/sys/fs/cgroup/cpu,cpuacct");
  assert.equal(mounts.v1["name=systemd"], undefined);
});

Deno.test("parseCgroupMounts() leaves out read-only mounts and unescapes paths", () => {
  const mounts = parseCgroupMounts([
    "35 31 0:32 / /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory",
    "41 31 0:38 / /my\\040cgroups rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate",
  ].join("\n"));
  assert.equal(mounts.v1.memory, undefined);
  assert.equal(mounts.unified, "/my cgroups");
});

Deno.test("describeLimits() says what is limited and how", () => {
  const both = { cpuMillis: 500, memoryBytes: 512 * MiB };
  assert.equal(describeLimits(both, "cgroup-v1"), "cpu 500m, memory 512Mi (cgroup v1)");
  assert.equal(describeLimits(both, "cgroup-v2"), "cpu 500m, memory 512Mi (cgroup v2)");
  assert.equal(describeLimits(both, "rlimit"), "memory 512Mi (rlimit), cpu 500m not enforced");
  assert.equal(describeLimits(both, "none"), "cpu 500m, memory 512Mi (not enforced)");
  assert.equal(describeLimits({ cpuMillis: 2000 }, "cgroup-v1"), "cpu 2 (cgroup v1)");
  assert.equal(
    describeLimits({ memoryBytes: 1536 * MiB }, "cgroup-v2"),
    "memory 1536Mi (cgroup v2)",
  );
  assert.equal(
    describeLimits({ memoryBytes: 100_000_000 }, "cgroup-v1"),
    "memory 95.4Mi (cgroup v1)",
  );
  assert.equal(describeLimits({ memoryBytes: 1000 }, "cgroup-v1"), "memory 1000 (cgroup v1)");
  assert.equal(
    describeLimits({ cpuMillis: 250 }, "rlimit"),
    "cpu 250m not enforced (rlimit cannot cap cpu)",
  );
  assert.equal(describeLimits({}, "cgroup-v1"), "none");
});

Deno.test("LimitGroup.create() rejects bad names, roots and limits", async () => {
  const cases: [string, Parameters<typeof LimitGroup.create>[1], { root?: string }][] = [
    ["../escape", { cpuMillis: 100 }, {}],
    ["", { cpuMillis: 100 }, {}],
    ["api-0", { cpuMillis: 5 }, {}],
    ["api-0", { cpuMillis: 100.5 }, {}],
    ["api-0", { memoryBytes: -1 }, {}],
    ["api-0", { memoryBytes: 0 }, {}],
    ["api-0", { cpuMillis: 100 }, { root: "/sys/fs/cgroup" }],
    ["api-0", { cpuMillis: 100 }, { root: "prisn/../.." }],
  ];
  for (const [name, limits, options] of cases) {
    await assert.rejects(
      LimitGroup.create(name, limits, options),
      (error: unknown) => error instanceof PrisnError && error.code === "INVALID",
      `${name} ${JSON.stringify(limits)} ${JSON.stringify(options)}`,
    );
  }
});

Deno.test("LimitGroup without limits runs the command as is", async () => {
  const group = await LimitGroup.create("plain", {});
  try {
    assert.equal(group.enforcement, "none");
    assert.deepEqual(group.wrap("/bin/echo", ["a b"]), { command: "/bin/echo", args: ["a b"] });
    assert.equal(await group.oomKilled(), false);
  } finally {
    await group.destroy();
  }
});

Deno.test({
  name: "wrap() passes the command's arguments through verbatim",
  ignore: !LINUX,
  async fn() {
    const root = testRoot();
    const marker = `${await Deno.makeTempDir()}/pwned`;
    const tricky = [
      "a b",
      `"double" 'single'`,
      `$(touch ${marker})`,
      `\`touch ${marker}\``,
      "$HOME ${PATH}",
      "; exit 3",
      "",
      "-n",
      "line\nbreak",
      "*",
      "\\",
      "--",
    ];
    const modes = ["none", "rlimit", ...CGROUPS ? [HOST] : []] as const;
    try {
      for (const enforcement of modes) {
        const group = await LimitGroup.create(`args-${enforcement}`, {
          cpuMillis: 500,
          memoryBytes: 256 * MiB,
        }, { root, enforcement });
        try {
          const { status, stdout } = await run(group.wrap("/usr/bin/printf", ["%s\\0", ...tricky]));
          assert.equal(status.code, 0, enforcement);
          assert.deepEqual(stdout.split("\0").slice(0, -1), tricky, enforcement);
          assert.equal(
            await exists(marker),
            false,
            `${enforcement}: an argument was run by a shell`,
          );
        } finally {
          await group.destroy();
        }
      }
    } finally {
      await Deno.remove(marker, { recursive: true }).catch(() => {});
      await removeRoot(root);
    }
  },
});

Deno.test({
  name: "wrap() puts the process in its cgroups before the command starts",
  ignore: !CGROUPS,
  async fn() {
    const root = testRoot();
    const group = await LimitGroup.create("api-0", { memoryBytes: 256 * MiB }, { root });
    try {
      assert.equal(group.enforcement, HOST);
      const { status, stdout } = await run(group.wrap("/bin/cat", ["/proc/self/cgroup"]));
      assert.equal(status.code, 0);
      const lines = stdout.trim().split("\n").map((line) => line.split(":"));
      const wanted = HOST === "cgroup-v1" ? ["memory", "cpu"] : [""];
      for (const controller of wanted) {
        const line = lines.find(([, controllers]) => controllers.split(",").includes(controller));
        assert.ok(line, `no ${controller} line in ${stdout}`);
        assert.ok(line[2].endsWith(`/${root}/api-0`), `${controller} cgroup is ${line[2]}`);
      }
    } finally {
      await group.destroy();
      await removeRoot(root);
    }
  },
});

Deno.test({
  name: "a process above its memory limit is OOM-killed and oomKilled() says so",
  ignore: !CGROUPS || !PYTHON,
  async fn() {
    const root = testRoot();
    const group = await LimitGroup.create("oom", { memoryBytes: 64 * MiB }, { root });
    try {
      assert.deepEqual(group.notes, []);
      assert.equal(await group.oomKilled(), false);
      const { status, stdout } = await run(group.wrap(PYTHON!, [HOG, "mem", "300"]));
      assert.equal(status.signal, "SIGKILL");
      assert.equal(stdout, "");
      assert.equal(await group.oomKilled(), true);
      const peak = await group.memoryPeak();
      if (peak !== undefined) assert.ok(peak <= 65 * MiB, `peak ${peak}`);
      await group.destroy();
      assert.equal(await group.oomKilled(), true, "the answer survives destroy()");
    } finally {
      await group.destroy();
      await removeRoot(root);
    }
  },
});

Deno.test({
  name: "the same allocation without a memory limit completes",
  ignore: !CGROUPS || !PYTHON,
  async fn() {
    const root = testRoot();
    const group = await LimitGroup.create("roomy", { cpuMillis: 2000 }, { root });
    try {
      const { status, stdout } = await run(group.wrap(PYTHON!, [HOG, "mem", "300"]));
      assert.equal(status.code, 0);
      assert.equal(stdout.trim(), "allocated 300");
      assert.equal(await group.oomKilled(), false);
      const peak = await group.memoryPeak();
      if (peak !== undefined) assert.ok(peak >= 290 * MiB, `peak ${peak} is not accounted`);
    } finally {
      await group.destroy();
      await removeRoot(root);
    }
  },
});

Deno.test({
  name: "a 200m cpu limit holds a busy loop near 20% of a core",
  ignore: !CGROUPS || !PYTHON,
  async fn() {
    const root = testRoot();
    const group = await LimitGroup.create("spin", { cpuMillis: 200 }, { root });
    try {
      const { status, stdout } = await run(group.wrap(PYTHON!, [HOG, "cpu", "1.5"]));
      assert.equal(status.code, 0);
      const share = Number(stdout.trim());
      assert.ok(share > 0.05 && share < 0.35, `busy loop got ${share} of a core`);
      const statFiles = group.paths.map((dir) => `${dir}/cpu.stat`);
      const present = await Promise.all(statFiles.map(exists));
      const statFile = statFiles.find((_, i) => present[i]);
      assert.ok(statFile, "no cpu.stat");
      const throttled = (await Deno.readTextFile(statFile)).match(/^nr_throttled (\d+)$/m);
      assert.ok(throttled && Number(throttled[1]) > 0, "the kernel never throttled the group");
    } finally {
      await group.destroy();
      await removeRoot(root);
    }
  },
});

Deno.test({
  name: "killAll() reaches processes that left the process group",
  ignore: !CGROUPS,
  async fn() {
    const root = testRoot();
    const group = await LimitGroup.create("escape", { memoryBytes: 128 * MiB }, { root });
    let started: Awaited<ReturnType<typeof startWithEscapee>> | undefined;
    try {
      started = await startWithEscapee(group);
      const { child, escapee } = started;
      await waitFor(async () => (await procs(group)).length === 2, { what: "2 processes" });
      assert.ok((await procs(group)).includes(escapee));
      // A group kill (kill(-pgid)) would miss it. (It is not sent here: once orphaned, an init
      // that reaps orphans could kill the escapee before killAll() gets the chance.)
      assert.notEqual(statFields(escapee)?.[2], String(child.pid));
      assert.equal(await group.killAll("SIGTERM"), 2);
      assert.equal((await child.status).signal, "SIGTERM");
      await waitFor(() => !alive(escapee), { what: "the escaped process to die" });
    } finally {
      if (started) killGroup(started.child.pid, "SIGKILL");
      await group.destroy();
      await removeRoot(root);
    }
  },
});

Deno.test({
  name: "destroy() kills leftovers, removes the cgroups and is idempotent",
  ignore: !CGROUPS,
  async fn() {
    const root = testRoot();
    const group = await LimitGroup.create("done", { cpuMillis: 100, memoryBytes: 64 * MiB }, {
      root,
    });
    let started: Awaited<ReturnType<typeof startWithEscapee>> | undefined;
    try {
      assert.ok(group.paths.length > 0);
      for (const dir of group.paths) assert.ok(await exists(dir), dir);
      started = await startWithEscapee(group);
      await group.destroy();
      for (const dir of group.paths) assert.equal(await exists(dir), false, dir);
      assert.equal((await started.child.status).signal, "SIGKILL");
      await waitFor(() => !alive(started!.escapee), { what: "the escaped process to die" });
      await group.destroy();
      assert.throws(() => group.wrap("/bin/true", []), PrisnError);
    } finally {
      if (started) killGroup(started.child.pid, "SIGKILL");
      await group.destroy();
      await removeRoot(root);
    }
  },
});

Deno.test({
  name: "a wrapped command that cannot join its cgroup does not run at all",
  ignore: !CGROUPS,
  async fn() {
    const root = testRoot();
    const marker = `${await Deno.makeTempDir()}/ran`;
    const group = await LimitGroup.create("gone", { memoryBytes: 64 * MiB }, { root });
    try {
      const wrapped = group.wrap("/usr/bin/touch", [marker]);
      await group.destroy();
      const { status, stderr } = await run(wrapped);
      assert.equal(status.code, LIMIT_SETUP_EXIT_CODE);
      assert.match(stderr, /prisn: cannot join cgroup/);
      assert.equal(await exists(marker), false);
    } finally {
      await group.destroy();
      await Deno.remove(marker.slice(0, marker.lastIndexOf("/")), { recursive: true });
      await removeRoot(root);
    }
  },
});

Deno.test({
  name: "create() refuses a busy group of the same name and replaces an empty one",
  ignore: !CGROUPS,
  async fn() {
    const root = testRoot();
    const first = await LimitGroup.create("twin", { memoryBytes: 64 * MiB }, { root });
    let second: LimitGroup | undefined;
    const child = spawn(first.wrap("/bin/sleep", ["300"]));
    try {
      await waitFor(async () => (await procs(first)).length === 1, { what: "sleep to join" });
      await assert.rejects(
        LimitGroup.create("twin", { memoryBytes: 64 * MiB }, { root }),
        (error: unknown) => error instanceof PrisnError && error.code === "CONFLICT",
      );
      killGroup(child.pid, "SIGKILL");
      await child.status;
      await waitFor(async () => (await procs(first)).length === 0, { what: "an empty group" });
      second = await LimitGroup.create("twin", { memoryBytes: 32 * MiB }, { root });
      const limitFile = HOST === "cgroup-v1" ? "memory.limit_in_bytes" : "memory.max";
      assert.equal((await Deno.readTextFile(`${second.paths[0]}/${limitFile}`)).trim(), "33554432");
    } finally {
      killGroup(child.pid, "SIGKILL");
      await child.status;
      await second?.destroy();
      await first.destroy();
      await removeRoot(root);
    }
  },
});

Deno.test({
  name: "cleanupStaleGroups() removes groups not kept and kills what runs in them",
  ignore: !CGROUPS,
  async fn() {
    const root = testRoot();
    const groups = await Promise.all(
      ["keep-me", "stale-1", "stale-2"].map((name) =>
        LimitGroup.create(name, { memoryBytes: 64 * MiB }, { root })
      ),
    );
    const child = spawn(groups[1].wrap("/bin/sleep", ["300"]));
    try {
      await waitFor(async () => (await procs(groups[1])).length === 1, { what: "sleep to join" });
      const removed = await cleanupStaleGroups(new Set(["keep-me"]), { root });
      assert.deepEqual(removed, ["stale-1", "stale-2"]);
      assert.equal((await child.status).signal, "SIGKILL");
      for (const dir of groups[0].paths) assert.ok(await exists(dir), dir);
      for (const group of groups.slice(1)) {
        for (const dir of group.paths) assert.equal(await exists(dir), false, dir);
      }
    } finally {
      killGroup(child.pid, "SIGKILL");
      await child.status;
      for (const group of groups) await group.destroy();
      await removeRoot(root);
    }
    for (const dir of groups[0].paths) {
      assert.equal(
        await exists(dir.slice(0, dir.lastIndexOf("/"))),
        false,
        "root group left behind",
      );
    }
  },
});

Deno.test({
  name: "forced rlimit enforcement caps memory and reports cpu as not enforced",
  ignore: !LINUX || !PYTHON,
  async fn() {
    const group = await LimitGroup.create("capped", { cpuMillis: 500, memoryBytes: 64 * MiB }, {
      enforcement: "rlimit",
    });
    try {
      assert.equal(group.enforcement, "rlimit");
      assert.deepEqual(group.paths, []);
      assert.ok(group.notes.some((note) => note.startsWith("cpu is not limited")), group.notes[0]);
      const capped = await run(group.wrap(PYTHON!, [HOG, "mem", "300"]));
      assert.equal(capped.status.code, 1);
      assert.match(capped.stderr, /MemoryError/);
      assert.equal(await group.oomKilled(), false);
      const fits = await run(group.wrap(PYTHON!, [HOG, "mem", "20"]));
      assert.equal(fits.status.code, 0);
      assert.equal(fits.stdout.trim(), "allocated 20");
    } finally {
      await group.destroy();
    }
  },
});

Deno.test({
  name: "forcing a cgroup mode the host lacks fails with UNAVAILABLE",
  ignore: !LINUX || HOST === "cgroup-v2",
  async fn() {
    await assert.rejects(
      LimitGroup.create("nope", { cpuMillis: 100 }, { enforcement: "cgroup-v2" }),
      (error: unknown) => error instanceof PrisnError && error.code === "UNAVAILABLE",
    );
  },
});
