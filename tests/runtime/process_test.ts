import assert from "node:assert/strict";
import { join } from "node:path";
import { type Paths, paths } from "../../core/paths.ts";
import { listLogFiles, LogWriter } from "../../runtime/logs.ts";
import {
  GroupProcess,
  killGroup,
  killRecordedGroup,
  processStartTicks,
} from "../../runtime/process.ts";
import { alive, waitFor } from "../_helpers.ts";

/** Above the largest pid_max Linux allows (2^22), so never a live pid. */
const NO_SUCH_PID = 4_194_305;

interface Fixture {
  p: Paths;
  dir: string;
  /** Starts `bash -c script` as a GroupProcess logging to deployment "app", stream "app-0". */
  start(script: string, env?: Record<string, string>): GroupProcess;
  /** The text of every logged line of "app" (timestamps and tags stripped but "[err]"). */
  logged(): Promise<string[]>;
}

/**
 * Runs `fn` with a temp folder and a way to start processes; afterwards kills whatever group is
 * still there, waits for it and removes the folder.
 */
async function withProcesses(fn: (f: Fixture) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "prisn-process-test-" });
  const p = paths(join(dir, "home"));
  const started: GroupProcess[] = [];
  try {
    await fn({
      p,
      dir,
      start(script, env = {}) {
        const proc = new GroupProcess(
          { command: "bash", args: ["-c", script], cwd: dir, env },
          new LogWriter(p, "app", "app-0"),
        );
        started.push(proc);
        return proc;
      },
      async logged() {
        const lines: string[] = [];
        for (const file of await listLogFiles(p, "app")) {
          for (const line of (await Deno.readTextFile(file)).split("\n")) {
            if (line) lines.push(line.slice(25));
          }
        }
        return lines;
      },
    });
  } finally {
    for (const proc of started) {
      killGroup(proc.pid, "SIGKILL");
      await proc.exited;
    }
    await Deno.remove(dir, { recursive: true });
  }
}

/** Live (not zombie) processes whose process group is `pgid`, read from /proc. */
function groupMembers(pgid: number): number[] {
  const members: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    let stat: string;
    try {
      stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
    } catch {
      continue; // exited while we looked
    }
    const [state, _ppid, pgrp] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (Number(pgrp) === pgid && state !== "Z") members.push(Number(entry.name));
  }
  return members;
}

/** Waits for a logged line matching `re` and returns its match. */
async function waitForLine(f: Fixture, re: RegExp): Promise<RegExpMatchArray> {
  return await waitFor(async () => {
    for (const line of await f.logged()) {
      const m = line.match(re);
      if (m) return m;
    }
    return undefined;
  }, { what: `a log line matching ${re}` });
}

// --- GroupProcess -----------------------------------------------------------------------------

Deno.test("GroupProcess logs stdout and stderr lines, a last partial line included", async () => {
  await withProcesses(async (f) => {
    const proc = f.start("echo out; echo err >&2; printf 'no newline'");
    await proc.exited;
    const lines = await f.logged();
    assert.deepEqual(lines.slice().sort(), ["[err] err", "no newline", "out"]);
    assert.ok(lines.indexOf("out") < lines.indexOf("no newline"), "stdout keeps its order");
  });
});

Deno.test("GroupProcess runs in the given folder with the extra environment added", async () => {
  await withProcesses(async (f) => {
    const proc = f.start(
      'pwd; echo "var=$PRISN_TEST_VAR"; command -v sleep >/dev/null && echo path-ok',
      {
        PRISN_TEST_VAR: "hello",
      },
    );
    await proc.exited;
    assert.deepEqual(await f.logged(), [await Deno.realPath(f.dir), "var=hello", "path-ok"]);
  });
});

Deno.test("GroupProcess reports the exit code of a process that exits by itself", async () => {
  await withProcesses(async (f) => {
    const proc = f.start("exit 3");
    assert.equal(proc.running, true);
    const info = await proc.exited;
    assert.equal(info.code, 3);
    assert.equal(info.signal, undefined);
    assert.equal(proc.running, false);
  });
});

Deno.test("GroupProcess leads its own process group and records its start ticks", async () => {
  await withProcesses(async (f) => {
    const proc = f.start("echo started; sleep 300");
    await waitForLine(f, /^started$/);
    const stat = Deno.readTextFileSync(`/proc/${proc.pid}/stat`);
    const pgrp = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[2]);
    assert.equal(pgrp, proc.pid);
    assert.notEqual(pgrp, Number(Deno.readTextFileSync("/proc/self/stat").split(" ")[4]));
    assert.equal(proc.startTicks, processStartTicks(proc.pid));
    assert.ok(proc.startTicks > 0);
    await proc.stop(5000);
  });
});

Deno.test("GroupProcess.stop() ends the whole group, a forked grandchild included", async () => {
  await withProcesses(async (f) => {
    const proc = f.start('sleep 300 & echo "child $!"; wait');
    const grandchild = Number((await waitForLine(f, /^child (\d+)$/))[1]);
    assert.ok(alive(grandchild));
    assert.deepEqual(groupMembers(proc.pid).sort(), [proc.pid, grandchild].sort());

    const info = await proc.stop(5000);
    assert.equal(info.signal, "SIGTERM");
    assert.equal(info.code, 143);
    assert.equal(proc.running, false);
    await waitFor(() => groupMembers(proc.pid).length === 0, { what: "the group to end" });
    assert.equal(alive(grandchild), false);
  });
});

Deno.test("GroupProcess.stop() SIGKILLs a group that ignores SIGTERM once the grace is over", async () => {
  await withProcesses(async (f) => {
    const proc = f.start('trap "" TERM; sleep 300 & echo "ready $!"; wait');
    const grandchild = Number((await waitForLine(f, /^ready (\d+)$/))[1]);
    const began = Date.now();
    const info = await proc.stop(300);
    assert.ok(Date.now() - began >= 290, `stopped after ${Date.now() - began}ms`);
    assert.equal(info.signal, "SIGKILL");
    assert.equal(info.code, 137);
    await waitFor(() => groupMembers(proc.pid).length === 0, { what: "the group to end" });
    assert.equal(alive(grandchild), false);
  });
});

Deno.test("GroupProcess.stop() does not wait out the grace when the group ends on SIGTERM", async () => {
  await withProcesses(async (f) => {
    const proc = f.start("echo ready; sleep 300");
    await waitForLine(f, /^ready$/);
    const began = Date.now();
    await proc.stop(60_000);
    assert.ok(Date.now() - began < 30_000);
  });
});

Deno.test("GroupProcess.stop() is idempotent and returns the same exit after the process ended", async () => {
  await withProcesses(async (f) => {
    const proc = f.start("exit 7");
    const exited = await proc.exited;
    assert.deepEqual(await proc.stop(1000), exited);
    assert.deepEqual(await proc.stop(1000), exited);
    assert.equal(exited.code, 7);
  });
});

Deno.test("GroupProcess kills what the process left in its group when it exits", async () => {
  await withProcesses(async (f) => {
    const proc = f.start('sleep 300 & echo "child $!"; exit 0');
    const info = await proc.exited; // would hang while the grandchild held the log pipe
    assert.equal(info.code, 0);
    const grandchild = Number((await waitForLine(f, /^child (\d+)$/))[1]);
    await waitFor(() => !alive(grandchild), { what: "the left-behind child to end" });
    assert.deepEqual(groupMembers(proc.pid), []);
  });
});

Deno.test({
  name: "GroupProcess.exited resolves though a process outside the group holds its output pipe",

  async fn() {
    await withProcesses(async (f) => {
      const proc = f.start('setsid sleep 300 & echo "escaped $!"; exit 0');
      const escaped = Number((await waitForLine(f, /^escaped (\d+)$/))[1]);
      try {
        let resolved = false;
        proc.exited.then(() => resolved = true);
        await waitFor(() => !proc.running, { what: "the process to exit" });
        await waitFor(() => resolved, { what: "exited to resolve", timeoutMs: 5000 });
      } finally {
        try {
          Deno.kill(escaped, "SIGKILL"); // else the cleanup would wait on `exited` for ever
        } catch { /* already gone */ }
      }
    });
  },
});

Deno.test("GroupProcess throws NotFound for a command that does not exist", async () => {
  await withProcesses((f) => {
    assert.throws(
      () =>
        new GroupProcess(
          { command: join(f.dir, "no-such-command"), args: [], cwd: f.dir, env: {} },
          new LogWriter(f.p, "app", "app-0"),
        ),
      Deno.errors.NotFound,
    );
    return Promise.resolve();
  });
});

// --- processStartTicks, killGroup, killRecordedGroup -------------------------------------------

Deno.test("processStartTicks() reads a stable start time and is undefined for a gone pid", () => {
  const own = processStartTicks(Deno.pid);
  assert.ok(own !== undefined && Number.isInteger(own) && own > 0, String(own));
  assert.equal(processStartTicks(Deno.pid), own);
  assert.equal(processStartTicks(NO_SUCH_PID), undefined);
});

Deno.test("killGroup() says false for a group that does not exist", () => {
  assert.equal(killGroup(NO_SUCH_PID, "SIGTERM"), false);
});

/** Spawns `bash -c script` in its own group; resolves once it printed its first line. */
async function spawnGroup(script: string): Promise<Deno.ChildProcess> {
  const child = new Deno.Command("bash", {
    args: ["-c", script],
    detached: true,
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.getReader();
  await reader.read();
  reader.releaseLock();
  await child.stdout.cancel();
  return child;
}

async function reap(child: Deno.ChildProcess): Promise<Deno.CommandStatus> {
  killGroup(child.pid, "SIGKILL");
  return await child.status;
}

Deno.test("killRecordedGroup() refuses a pid whose start ticks differ from the record", async () => {
  const child = await spawnGroup("echo ready; sleep 300");
  try {
    const ticks = processStartTicks(child.pid)!;
    assert.equal(await killRecordedGroup(child.pid, ticks + 1, 1000), false);
    assert.equal(alive(child.pid), true, "a different process with the same pid is left alone");
  } finally {
    await reap(child);
  }
});

Deno.test("killRecordedGroup() ends the recorded process's group with SIGTERM", async () => {
  const child = await spawnGroup('sleep 300 & echo "$!"; wait');
  try {
    const ticks = processStartTicks(child.pid)!;
    assert.equal(await killRecordedGroup(child.pid, ticks, 5000), true);
    const status = await child.status;
    assert.equal(status.signal, "SIGTERM");
    await waitFor(() => groupMembers(child.pid).length === 0, { what: "the group to end" });
  } finally {
    await reap(child);
  }
});

Deno.test("killRecordedGroup() SIGKILLs a recorded group that ignores SIGTERM", async () => {
  const child = await spawnGroup('trap "" TERM; echo ready; sleep 300 & wait');
  try {
    const ticks = processStartTicks(child.pid)!;
    const began = Date.now();
    assert.equal(await killRecordedGroup(child.pid, ticks, 300), true);
    assert.ok(Date.now() - began >= 290);
    assert.equal((await child.status).signal, "SIGKILL");
    await waitFor(() => groupMembers(child.pid).length === 0, { what: "the group to end" });
  } finally {
    await reap(child);
  }
});

Deno.test("killRecordedGroup() of a pid that is gone returns false", async () => {
  assert.equal(await killRecordedGroup(NO_SUCH_PID, 12345, 100), false);
});
