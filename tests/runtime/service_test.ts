/**
 * Service with the fake driver: rollouts, abandoning a version, scale, stop — exact and fast.
 * Probes, the proxy and the records are real; only the processes are fakes.
 */
import assert from "node:assert/strict";
import { Service } from "../../runtime/service.ts";
import { StartQueue } from "../../runtime/start_queue.ts";
import { freePort, isPrisnError, waitFor } from "../_helpers.ts";
import { events, fakeLaunch, fakeSpec, withFakes } from "./_fake.ts";
import type { FakeStart } from "../../runtime/fake_driver.ts";

// Generous readiness: the suite runs files side by side on 2 cores, and a stalled event loop must
// not read as a replica that never got ready. Tests about the timeout set their own.
const FAST = {
  readiness_timeout: "5s",
  drain_grace: "0s",
  stop_grace: "200ms",
  restart: { backoff_initial: "10ms", backoff_max: "80ms" },
  health: { path: "/healthz", interval: "50ms", timeout: "200ms", failures: 2 },
};

Deno.test("Service.rollout() replaces every old replica and keeps the ready count up all along", async () => {
  await withFakes(() => ({ readyAfterMs: 20 }), async ({ ctx, driver, dir }) => {
    const port = freePort();
    const service = new Service(ctx, "api", { driver });
    const spec = fakeSpec({ name: "api", port, replicas: 3, ...FAST });
    try {
      await service.rollout({ version: "v-1", spec, launch: fakeLaunch(dir), replicas: 3 });
      assert.equal(service.ready, 3);
      let lowest = Infinity;
      const watch = setInterval(() => lowest = Math.min(lowest, service.ready), 2);
      await service.rollout({ version: "v-2", spec, launch: fakeLaunch(dir), replicas: 3 });
      clearInterval(watch);
      assert.deepEqual(service.status().map((r) => r.version), ["v-2", "v-2", "v-2"]);
      assert.ok(lowest >= 3, `ready dropped to ${lowest} during the rollout`);
      assert.equal(driver.running.length, 3, "old replicas' processes are stopped");
    } finally {
      await service.stop();
    }
  });
});

Deno.test("Service.rollout() replaces in batches of rollout.max_parallel", async () => {
  await withFakes(() => ({ readyAfterMs: 30 }), async ({ ctx, driver, dir }) => {
    const service = new Service(ctx, "api", { driver });
    const spec = (v: number) =>
      fakeSpec({
        name: "api",
        port: freePort(),
        replicas: 4,
        rollout: { max_parallel: v },
        ...FAST,
      });
    try {
      await service.rollout({
        version: "v-1",
        spec: spec(2),
        launch: fakeLaunch(dir),
        replicas: 4,
      });
      const before = driver.starts.length;
      let most = 0;
      const watch = setInterval(() => most = Math.max(most, service.replicas.length), 1);
      await service.rollout({
        version: "v-2",
        spec: spec(2),
        launch: fakeLaunch(dir),
        replicas: 4,
      });
      clearInterval(watch);
      assert.equal(driver.starts.length - before, 4);
      assert.equal(most, 6, "two new replicas beside the four old ones at most");
    } finally {
      await service.stop();
    }
  });
});

Deno.test("Service.rollout() abandons a version that never gets ready; the old one keeps serving", async () => {
  await withFakes(
    (s) => ({ ready: s.request.spec.env.PRISN_VERSION !== "v-bad" }),
    async ({ ctx, driver, dir }) => {
      const service = new Service(ctx, "api", { driver });
      const spec = fakeSpec({
        name: "api",
        port: freePort(),
        replicas: 2,
        ...FAST,
        readiness_timeout: "500ms",
      });
      const launch = (v: string) => ({ ...fakeLaunch(dir), env: { PRISN_VERSION: v } });
      try {
        await service.rollout({ version: "v-good", spec, launch: launch("v-good"), replicas: 2 });
        await assert.rejects(
          service.rollout({ version: "v-bad", spec, launch: launch("v-bad"), replicas: 2 }),
          isPrisnError(
            "FAILED",
            /^v-bad never became ready \(replica api-\d not ready within 1s\); v-good keeps serving$/,
          ),
        );
        assert.deepEqual(service.status().map((r) => r.version), ["v-good", "v-good"]);
        assert.equal(service.ready, 2);
        assert.equal(service.target?.version, "v-good");
        assert.equal(driver.running.length, 2, "the bad version's process is stopped");
      } finally {
        await service.stop();
      }
    },
  );
});

Deno.test("Service.rollout() of a first version that crashes fails at once and keeps restarting it", async () => {
  await withFakes(() => ({ runMs: 5, exitCode: 3 }), async ({ ctx, driver, dir }) => {
    const service = new Service(ctx, "api", { driver });
    const spec = fakeSpec({ name: "api", port: freePort(), replicas: 2, ...FAST });
    try {
      const t0 = Date.now();
      await assert.rejects(
        service.rollout({ version: "v-1", spec, launch: fakeLaunch(dir), replicas: 2 }),
        isPrisnError(
          "FAILED",
          /^v-1 is not ready \(replica api-\d exited with code 3\); it keeps restarting: see prisn logs api-\d$/,
        ),
      );
      assert.ok(Date.now() - t0 < 2_500, "failed well before the readiness timeout");
      await waitFor(() => driver.starts.length >= 6, { what: "restarts" });
      assert.equal(service.replicas.length, 2);
    } finally {
      await service.stop();
    }
  });
});

Deno.test("Service.scale() adds and removes replicas of the current version, lowest slots kept", async () => {
  await withFakes(() => ({}), async ({ ctx, driver, dir }) => {
    const service = new Service(ctx, "worker", { driver });
    const spec = fakeSpec({ name: "worker", replicas: 2, ...FAST });
    try {
      await service.rollout({ version: "v-1", spec, launch: fakeLaunch(dir), replicas: 2 });
      await service.scale(5);
      assert.deepEqual(service.status().map((r) => r.name), [
        "worker-0",
        "worker-1",
        "worker-2",
        "worker-3",
        "worker-4",
      ]);
      await service.scale(1);
      assert.deepEqual(service.status().map((r) => r.name), ["worker-0"]);
      assert.equal(driver.running.length, 1);
      await service.scale(0);
      assert.equal(driver.running.length, 0);
    } finally {
      await service.stop();
    }
  });
});

Deno.test("a replica that is draining its connections on the way out reports Terminating, not ready", async () => {
  await withFakes(() => ({}), async ({ ctx, driver, dir }) => {
    const port = freePort();
    const service = new Service(ctx, "api", { driver });
    const spec = fakeSpec({ name: "api", port, replicas: 2, ...FAST, drain_grace: "3s" });
    const conns: Deno.TcpConn[] = [];
    try {
      await service.rollout({ version: "v-1", spec, launch: fakeLaunch(dir), replicas: 2 });
      // Open connections through the port, round robin: api-1 holds at least one.
      for (let i = 0; i < 4; i++) {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port });
        conns.push(conn);
        await conn.write(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        await conn.read(new Uint8Array(256));
      }
      const scaled = service.scale(1);
      const leaving = await waitFor(
        () => service.status().find((r) => r.name === "api-1" && r.state === "Terminating"),
        { what: "api-1 terminating" },
      );
      assert.equal(leaving.ready, false, "a terminating replica is not ready");
      assert.equal(leaving.pid !== undefined, true, "it still runs while its connections drain");
      assert.equal(service.status().find((r) => r.name === "api-0")?.ready, true);
      for (const c of conns.splice(0)) c.close();
      await scaled;
      assert.deepEqual(service.status().map((r) => r.name), ["api-0"]);
    } finally {
      for (const c of conns) c.close();
      await service.stop();
    }
  });
});

/**
 * A 2-replica service whose api-0 crashes once it has been ready a moment and whose restart takes
 * `restartReadyMs` to get ready; `fn` runs once api-0 is restarting (1 ready, api-1).
 */
async function withApi0Restarting(
  restartReadyMs: number,
  ownsName: ((index: number) => boolean) | undefined,
  fn: (service: Service) => Promise<void>,
): Promise<void> {
  const behave = (s: FakeStart) =>
    s.request.name.endsWith(".api-0")
      ? (s.attempt === 1 ? { runMs: 300, exitCode: 1 } : { readyAfterMs: restartReadyMs })
      : {};
  await withFakes(behave, async ({ ctx, driver, dir }) => {
    const service = new Service(ctx, "api", { driver });
    const spec = fakeSpec({ name: "api", port: freePort(), replicas: 2, ...FAST });
    try {
      const launch = fakeLaunch(dir);
      await service.rollout({ version: "v-1", spec, launch, replicas: 2, ownsName });
      await waitFor(
        () => driver.starts.filter((s) => s.request.name.endsWith(".api-0")).length === 2,
        { what: "api-0 restarting" },
      );
      assert.equal(service.ready, 1);
      await fn(service);
    } finally {
      await service.stop();
    }
  });
}

Deno.test("Service.scale() down stops a replica that is not ready before a ready one", async () => {
  await withApi0Restarting(3_000, undefined, async (service) => {
    await service.scale(1);
    // Not the highest slot (api-1) as when all are ready: the one replica serving stays.
    assert.deepEqual(service.status().map((r) => `${r.name} ${r.ready}`), ["api-1 true"]);
  });
});

Deno.test("Service.scale() down keeps the replicas this node owns, and stops a ready one only once they are ready", async () => {
  // In a cluster the placement may give the name api-1 to another node meanwhile.
  let othersOwnOne = false;
  const ownsName = (i: number) => !(othersOwnOne && i === 1);
  await withApi0Restarting(1_500, ownsName, async (service) => {
    othersOwnOne = true;
    let lowest = service.ready;
    const watch = setInterval(() => lowest = Math.min(lowest, service.ready), 5);
    await service.scale(1);
    clearInterval(watch);
    assert.deepEqual(service.status().map((r) => `${r.name} ${r.ready}`), ["api-0 true"]);
    assert.equal(lowest, 1, "api-1 stopped before api-0 was ready again");
  });
});

Deno.test("Service starts wait for the agent's start queue, and the readiness time counts from the start", async () => {
  await withFakes(() => ({ readyAfterMs: 300 }), async ({ ctx, driver, dir }) => {
    const starts = new StartQueue(2);
    const service = new Service(ctx, "api", { driver, starts });
    // 8 replicas, 2 at a time, 300 ms each: ~1.2 s, though each may take only 1 s to get ready.
    const spec = fakeSpec({
      name: "api",
      port: freePort(),
      replicas: 8,
      ...FAST,
      readiness_timeout: "1s",
    });
    try {
      let most = 0;
      const watch = setInterval(
        () => most = Math.max(most, driver.running.length - service.ready),
        1,
      );
      await service.rollout({ version: "v-1", spec, launch: fakeLaunch(dir), replicas: 8 });
      clearInterval(watch);
      assert.equal(service.ready, 8);
      assert.ok(most <= 2, `${most} replicas were starting at once`);
      assert.equal(starts.active, 0, "every start slot is given back");
    } finally {
      await service.stop();
    }
  });
});

Deno.test("Service.stop() SIGKILLs a replica that ignores SIGTERM once the stop grace is over", async () => {
  await withFakes(() => ({ ignoreSigterm: true }), async ({ ctx, driver, dir }) => {
    const service = new Service(ctx, "stubborn", { driver });
    const spec = fakeSpec({ name: "stubborn", replicas: 1, ...FAST });
    await service.rollout({ version: "v-1", spec, launch: fakeLaunch(dir), replicas: 1 });
    const t0 = Date.now();
    await service.stop();
    const took = Date.now() - t0;
    assert.deepEqual(driver.starts[0].handle?.signals, ["SIGTERM", "SIGKILL"]);
    assert.ok(took >= 190 && took < 1_000, `stop took ${took} ms with a 200 ms grace`);
    assert.deepEqual(ctx.records.listProcesses(), [], "no process record is left");
  });
});

Deno.test("Replica restarts back off exponentially up to restart.backoff_max, and max_restarts gives up", async () => {
  await withFakes(() => ({ runMs: 0, exitCode: 1 }), async ({ ctx, driver, dir }) => {
    const service = new Service(ctx, "crashy", { driver });
    const spec = fakeSpec({
      name: "crashy",
      replicas: 1,
      ...FAST,
      restart: { backoff_initial: "20ms", backoff_max: "80ms", max_restarts: 5 },
    });
    try {
      await service.rollout({ version: "v-1", spec, launch: fakeLaunch(dir), replicas: 1 })
        .catch(() => {});
      await waitFor(() => service.status()[0]?.state === "Failed", { what: "gave up" });
      const at = driver.starts.map((s) => s.at);
      assert.equal(at.length, 6, "the first start and 5 restarts");
      const gaps = at.slice(1).map((t, i) => t - at[i]);
      const expected = [20, 40, 80, 80, 80];
      gaps.forEach((g, i) =>
        assert.ok(g >= expected[i] && g < expected[i] + 60, `gap ${i}: ${g} ms`)
      );
      const log = events(ctx, "crashy");
      assert.match(
        log.at(-1)!,
        /^GaveUp: replica crashy-0 exited with code 1; gave up after 5 restart/,
      );
      assert.equal(log.filter((e) => e.startsWith("ReplicaExited")).length, 5);
    } finally {
      await service.stop();
    }
  });
});

Deno.test("Replica restarts after failing liveness checks and after a start that cannot spawn", async () => {
  await withFakes(
    (s) => s.attempt === 1 ? { failStart: "no such program" } : {},
    async ({ ctx, driver, dir }) => {
      const service = new Service(ctx, "api", { driver });
      const spec = fakeSpec({
        name: "api",
        port: freePort(),
        replicas: 1,
        ...FAST,
        readiness_timeout: "2s",
      });
      try {
        await service.rollout({ version: "v-1", spec, launch: fakeLaunch(dir), replicas: 1 })
          .catch(() => {});
        await waitFor(() => service.ready === 1, { what: "ready after the failed spawn" });
        assert.match(
          events(ctx, "api")[0],
          /^SpawnFailed: replica api-0 could not start: no such program$/,
        );
        // Liveness: the process hangs (still running, no answers); two failed probes restart it.
        const hung = driver.starts[1].handle!;
        await hung.hang();
        await waitFor(() => driver.starts.length === 3 && service.ready === 1, {
          what: "a new process after the failed liveness checks",
        });
        assert.deepEqual(hung.signals, ["SIGTERM"]);
        const log = events(ctx, "api");
        assert.ok(
          log.includes("LivenessFailed: replica api-0 failed its health check (2/2)"),
          `${log}`,
        );
      } finally {
        await service.stop();
      }
    },
  );
});

Deno.test("each lifetime of a replica's process is a run: a restart ends one (exit code) and starts the next", async () => {
  await withFakes(
    (s) => s.attempt <= 2 ? { runMs: 30, exitCode: 4 } : {},
    async ({ ctx, driver, dir }) => {
      const service = new Service(ctx, "api", { driver });
      const spec = fakeSpec({ name: "api", replicas: 1, ...FAST });
      try {
        await service.rollout({ version: "v-1", spec, launch: fakeLaunch(dir), replicas: 1 });
        const runs = await waitFor(() => {
          const r = ctx.records.listRuns({ deployment: "api" });
          return r.length === 3 && r[0].status === "running" ? r : undefined;
        }, { what: "three runs of api-0, the last one running" });
        assert.deepEqual(
          runs.map((r) => [r.replica, r.trigger, r.status, r.exitCode]),
          [
            ["api-0", "restart", "running", undefined],
            ["api-0", "restart", "failed", 4],
            ["api-0", "start", "failed", 4],
          ],
        );
        assert.ok(runs.every((r) => r.node === "test-node" && r.version === "v-1"));
        assert.ok(runs[1].finishedAt! <= runs[0].startedAt!, "one run ends before the next starts");
        assert.deepEqual(
          ctx.records.listRuns({ replica: "api-0" }).map((r) => r.id),
          runs.map((r) => r.id),
        );
        assert.deepEqual(ctx.records.listRuns({ replica: "api-1" }), []);
      } finally {
        await service.stop();
      }
      const last = ctx.records.listRuns({ deployment: "api", limit: 1 })[0];
      assert.equal(last.status, "completed", "a replica prisn stopped ended normally");
      assert.equal(last.reason, "stopped");
      assert.equal(ctx.records.listRuns({ statuses: ["running"] }).length, 0);
    },
  );
});

Deno.test("the history limits bound the runs of a crash-looping replica", async () => {
  await withFakes(() => ({ runMs: 5, exitCode: 1 }), async ({ ctx, driver, dir }) => {
    const service = new Service(ctx, "loop", { driver });
    const spec = fakeSpec({
      name: "loop",
      replicas: 1,
      ...FAST,
      restart: { backoff_initial: "5ms", backoff_max: "5ms" },
      history: { failed: 3, successful: 2 },
    });
    try {
      await service.rollout({ version: "v-1", spec, launch: fakeLaunch(dir), replicas: 1 })
        .catch(() => {});
      await waitFor(() => driver.starts.length >= 10, { what: "ten starts" });
      const failed = ctx.records.listRuns({ deployment: "loop", statuses: ["failed"] });
      assert.ok(failed.length <= 3, `${failed.length} failed runs kept, history.failed is 3`);
      assert.ok(failed.length >= 1);
    } finally {
      await service.stop();
    }
  });
});
