/**
 * Soak: one agent under a steady mix for a while, sampled. A crash-looping service, an
 * every-second cronjob, a `yes`-style chatty service (over the log rate limit), a service under
 * HTTP load (wrk when installed, else a fetch loop) and a deploy/rollback of it every 30 s. Every
 * PRISN_SOAK_SAMPLE_SECONDS the agent's resident memory, threads and open descriptors are
 * sampled; the series and each one's slope (least squares, per minute, after the first minute of
 * warm-up) are printed. Figures only: it fails on nothing but a broken run.
 *
 *   ./denow run -A bench/soak.ts            # 10 minutes
 *   PRISN_SOAK_SECONDS=120 ./denow run -A bench/soak.ts
 */
import { join } from "node:path";
import {
  agentPid,
  BenchHome,
  envInt,
  freePort,
  machineLine,
  printTable,
  procStatusKiB,
  pythonHttpServer,
  runBench,
  sleep,
  writeProject,
} from "./_util.ts";

/** One sample of the agent process. */
export interface SoakSample {
  /** Seconds since the soak started. */
  at: number;
  rssKiB: number;
  threads: number;
  fds: number;
}

/** What a soak did and saw. */
export interface SoakResult {
  samples: SoakSample[];
  deploys: number;
  rollbacks: number;
  requests: number;
  failedRequests: number;
  cronRuns: number;
}

export interface SoakOptions {
  /** @default 600 */
  seconds?: number;
  /** @default 10 */
  sampleSeconds?: number;
  /** @default 30 */
  deployEverySeconds?: number;
  /**
   * How chatty the chatty service is: `yes` (as fast as a pipe goes) or `paced` (about 2 MiB/s,
   * still over the log rate limit, for a soak that shares the machine, as in the test suite).
   * @default "yes"
   */
  chatty?: "yes" | "paced";
  /** Told each sample as it is taken. */
  onSample?: (s: SoakSample) => void;
}

/** About 2 MiB/s of output: 200 lines of 100 bytes every 10 ms. */
const PACED_CHATTER = `import sys, time
line = "chatty " + "x" * 92 + "\\n"
while True:
    sys.stdout.write(line * 200)
    sys.stdout.flush()
    time.sleep(0.01)
`;

/** Threads and open descriptors of a process, from /proc. */
function procCounts(pid: number): { threads: number; fds: number } {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const threads = Number(/^Threads:\s+(\d+)/m.exec(status)?.[1] ?? 0);
  let fds = 0;
  for (const _ of Deno.readDirSync(`/proc/${pid}/fd`)) fds++;
  return { threads, fds };
}

/** Runs the soak against `home` (a fresh BenchHome) and returns what it measured. */
export async function soak(home: BenchHome, options: SoakOptions = {}): Promise<SoakResult> {
  const seconds = options.seconds ?? 600;
  const sampleMs = (options.sampleSeconds ?? 10) * 1000;
  const deployMs = (options.deployEverySeconds ?? 30) * 1000;
  const port = freePort();
  const web = writeProject(join(home.dir, "web"), {
    "main.py": pythonHttpServer('"soak " + os.environ["PRISN_VERSION"]'),
  });
  const projects: Record<string, string> = {
    crashy: writeProject(join(home.dir, "crashy"), {
      "main.sh": "#!/bin/bash\necho bye; exit 1\n",
    }),
    tick: writeProject(join(home.dir, "tick"), { "main.sh": "#!/bin/bash\necho tick\n" }),
    chatty: writeProject(
      join(home.dir, "chatty"),
      options.chatty === "paced"
        ? { "main.py": PACED_CHATTER }
        : { "main.sh": "#!/bin/bash\nexec yes chatty\n" },
    ),
  };
  await home.ok("deploy", web, "--port", String(port), "--replicas", "2", "--env", "ROUND=0");
  await home.ok("deploy", projects.crashy, "--type", "service");
  await home.ok("deploy", projects.tick, "--schedule", "* * * * * *");
  await home.ok("deploy", projects.chatty, "--type", "service");
  const pid = agentPid(home.paths);
  if (!pid) throw new Error("no agent pid after the deploys");

  const started = Date.now();
  const deadline = started + seconds * 1000;
  const stop = new AbortController();
  const result: SoakResult = {
    samples: [],
    deploys: 0,
    rollbacks: 0,
    requests: 0,
    failedRequests: 0,
    cronRuns: 0,
  };

  const load = (async () => {
    while (!stop.signal.aborted) {
      try {
        const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(3000) });
        await res.text();
        if (res.ok) result.requests++;
        else result.failedRequests++;
      } catch {
        if (!stop.signal.aborted) result.failedRequests++;
      }
    }
  })();
  const rollouts = (async () => {
    for (let round = 1; !stop.signal.aborted; round++) {
      await sleep(deployMs);
      if (stop.signal.aborted) break;
      if (round % 2 === 1) {
        await home.ok("deploy", web, "--port", String(port), "--env", `ROUND=${round}`);
        result.deploys++;
      } else {
        await home.ok("rollback", "web");
        result.rollbacks++;
      }
    }
  })();

  while (Date.now() < deadline) {
    const { threads, fds } = procCounts(pid);
    const sample = {
      at: Math.round((Date.now() - started) / 1000),
      rssKiB: procStatusKiB(pid) ?? 0,
      threads,
      fds,
    };
    result.samples.push(sample);
    options.onSample?.(sample);
    await sleep(Math.min(sampleMs, Math.max(0, deadline - Date.now())));
  }
  stop.abort();
  await Promise.all([load, rollouts]);
  const runs = JSON.parse(
    (await home.ok("get", "jobs", "tick", "-o", "json", "--limit", "100000"))
      .stdout,
  ) as unknown[];
  result.cronRuns = runs.length;
  return result;
}

/** Least-squares slope of `values` over `at` (seconds), per minute. */
export function slopePerMinute(samples: SoakSample[], value: (s: SoakSample) => number): number {
  const n = samples.length;
  if (n < 2) return 0;
  const mx = samples.reduce((a, s) => a + s.at, 0) / n;
  const my = samples.reduce((a, s) => a + value(s), 0) / n;
  let num = 0;
  let den = 0;
  for (const s of samples) {
    num += (s.at - mx) * (value(s) - my);
    den += (s.at - mx) ** 2;
  }
  return den === 0 ? 0 : (num / den) * 60;
}

if (import.meta.main) {
  const home = new BenchHome("prisn-soak-");
  await runBench("soak", async () => {
    const seconds = envInt("PRISN_SOAK_SECONDS", 600);
    console.log(machineLine());
    console.log(`soak: ${seconds} s, sampling every ${envInt("PRISN_SOAK_SAMPLE_SECONDS", 10)} s`);
    const r = await soak(home, {
      seconds,
      sampleSeconds: envInt("PRISN_SOAK_SAMPLE_SECONDS", 10),
      onSample: (s) =>
        console.log(
          `  t=${String(s.at).padStart(5)} s  rss ${(s.rssKiB / 1024).toFixed(1)} MiB  ` +
            `threads ${s.threads}  fds ${s.fds}`,
        ),
    });
    const warm = r.samples.filter((s) => s.at >= 60);
    const used = warm.length >= 2 ? warm : r.samples;
    printTable(
      ["series", "first", "last", "min", "max", "slope/min (after 1 min)"],
      [
        ["rss MiB", (s: SoakSample) => s.rssKiB / 1024] as const,
        ["threads", (s: SoakSample) => s.threads] as const,
        ["fds", (s: SoakSample) => s.fds] as const,
      ].map(([name, f]) => {
        const values = r.samples.map(f);
        return [
          name,
          values[0].toFixed(1),
          values.at(-1)!.toFixed(1),
          Math.min(...values).toFixed(1),
          Math.max(...values).toFixed(1),
          slopePerMinute(used, f).toFixed(2),
        ];
      }),
    );
    console.log(
      `${r.deploys} deploys, ${r.rollbacks} rollbacks, ${r.requests} requests ` +
        `(${r.failedRequests} failed), ${r.cronRuns} cron runs recorded`,
    );
  }, () => home.close());
}
