/**
 * Deploy latency: wall time from spawning `prisn deploy` until
 *   - a job's run has completed (polled over the agent API every 5 ms), or
 *   - a service answers with the new version on a fresh TCP connection to its port,
 * for a 10-file and a 2,000-file folder. Each timed deploy changes one file, so it is a new
 * version; "unchanged" is a redeploy of the same content (nothing restarts). The agent is warm.
 *
 *   ./denow run -A bench/deploy_bench.ts            (BENCH_ITERATIONS=5 by default)
 *
 * Prints figures; never fails on a time.
 */
import { join } from "node:path";
import type { RunRecord } from "../core/types.ts";
import type { DeployResult } from "../runtime/deploy.ts";
import { AgentClient } from "../runtime/client.ts";
import {
  BenchHome,
  cliFloor,
  freePort,
  machineLine,
  ms,
  printTable,
  pythonHttpServer,
  sleep,
  stats,
  STATS_HEADERS,
  statsRow,
} from "./_util.ts";

const ITERATIONS = Number(Deno.env.get("BENCH_ITERATIONS") ?? 5);
const UNCHANGED_RUNS = 3;
const POLL_MS = 5;
const WAIT_LIMIT_MS = 120_000;

type Kind = "job" | "service";

interface CaseResult {
  label: string;
  files: number;
  /** The deployment's first version (a new name). */
  first: number;
  /** New versions of an existing deployment: spawn → completed / serving. */
  next: number[];
  /** The same deploys: spawn → `prisn deploy` exited. */
  cliExit: number[];
  unchanged: number[];
}

/** Writes a project folder: the entrypoint, stamp.txt (changed per version) and filler files. */
async function makeProject(dir: string, kind: Kind, files: number): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  if (kind === "job") {
    await Deno.writeTextFile(
      join(dir, "main.sh"),
      '#!/usr/bin/env bash\nset -eu\necho "bench job $(cat "$(dirname "$0")/stamp.txt")"\n',
    );
  } else {
    await Deno.writeTextFile(join(dir, "main.py"), SERVICE_PY);
  }
  await Deno.writeTextFile(join(dir, "stamp.txt"), "initial\n");
  const line = "x".repeat(60) + "\n";
  for (let i = 0; i < files - 2; i++) {
    const sub = join(dir, "lib", `mod${i % 20}`, `part${Math.floor(i / 20) % 10}`);
    await Deno.mkdir(sub, { recursive: true });
    await Deno.writeTextFile(join(sub, `file${i}.txt`), `file ${i}\n` + line.repeat(4));
  }
}

const SERVICE_PY = pythonHttpServer(
  "STAMP",
  `with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "stamp.txt")) as f:
    STAMP = f.read().strip()`,
);

/** One HTTP/1.0 GET over a new TCP connection (no keep-alive reuse); the body, or undefined. */
async function getFresh(port: number, timeoutMs: number): Promise<string | undefined> {
  let conn: Deno.TcpConn | undefined;
  let closed = false;
  const close = () => {
    if (!closed && conn) {
      closed = true;
      conn.close();
    }
  };
  const timer = setTimeout(close, timeoutMs);
  try {
    conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(new TextEncoder().encode("GET / HTTP/1.0\r\nHost: bench\r\n\r\n"));
    const text = await new Response(conn.readable).text();
    closed = true; // the readable closed the connection
    const split = text.indexOf("\r\n\r\n");
    if (!text.startsWith("HTTP/1.0 200") || split < 0) return undefined;
    return text.slice(split + 4);
  } catch {
    return undefined;
  } finally {
    clearTimeout(timer);
    close();
  }
}

class DeployBench {
  constructor(readonly h: BenchHome, readonly client: AgentClient) {}

  /** `prisn deploy DIR --name NAME -o json [extra]`, timed from spawn. */
  async #deploy(dir: string, name: string, extra: string[]) {
    const r = await this.h.cli("deploy", dir, "--name", name, "-o", "json", ...extra);
    if (r.code !== 0) {
      throw new Error(`prisn deploy ${name} exited ${r.code}: ${(r.stderr || r.stdout).trim()}`);
    }
    return { ms: r.ms, result: JSON.parse(r.stdout) as DeployResult };
  }

  /** Deploys a job and waits for its run to complete: [spawn → completed, spawn → CLI exit]. */
  async job(dir: string, name: string): Promise<[number, number]> {
    const start = performance.now();
    const { ms: cli, result } = await this.#deploy(dir, name, []);
    if (result.unchanged) return [cli, cli];
    if (!result.runId) throw new Error(`deploy of ${name} started no run`);
    const deadline = start + WAIT_LIMIT_MS;
    while (performance.now() < deadline) {
      const run = await this.client.call<RunRecord>("GET", `/v1/runs/${result.runId}`);
      if (run.status === "completed") return [performance.now() - start, cli];
      if (run.status === "failed") {
        throw new Error(`run ${run.id} of ${name} failed (exit ${run.exitCode}, ${run.reason})`);
      }
      await sleep(POLL_MS);
    }
    throw new Error(`run ${result.runId} of ${name} did not complete in ${WAIT_LIMIT_MS} ms`);
  }

  /**
   * Deploys a service and, from the same instant, opens a fresh connection to its port every
   * 5 ms until one answers with `stamp`: [spawn → first such answer, spawn → CLI exit].
   */
  async service(
    dir: string,
    name: string,
    port: number,
    stamp: string,
  ): Promise<[number, number]> {
    const start = performance.now();
    let served: number | undefined;
    let stop = false;
    const watcher = (async () => {
      while (!stop && performance.now() - start < WAIT_LIMIT_MS) {
        const body = await getFresh(port, 2_000);
        if (body?.trim() === stamp) {
          served = performance.now() - start;
          return;
        }
        await sleep(POLL_MS);
      }
    })();
    try {
      const { ms: cli } = await this.#deploy(dir, name, ["--port", String(port)]);
      await watcher;
      if (served === undefined) throw new Error(`${name} never answered with ${stamp}`);
      return [served, cli];
    } finally {
      stop = true;
      await watcher;
    }
  }

  async run(kind: Kind, files: number): Promise<CaseResult> {
    const name = `${kind}-${files}`;
    const dir = join(this.h.dir, "src", name);
    await makeProject(dir, kind, files);
    const port = kind === "service" ? freePort() : 0;
    const once = async (i: number) => {
      const stamp = `${name}-v${i}-${crypto.randomUUID().slice(0, 8)}`;
      await Deno.writeTextFile(join(dir, "stamp.txt"), stamp + "\n");
      return kind === "job"
        ? await this.job(dir, name)
        : await this.service(dir, name, port, stamp);
    };
    const [first] = await once(0);
    const next: number[] = [];
    const cliExit: number[] = [];
    for (let i = 1; i <= ITERATIONS; i++) {
      const [total, cli] = await once(i);
      next.push(total);
      cliExit.push(cli);
    }
    const unchanged: number[] = [];
    for (let i = 0; i < UNCHANGED_RUNS; i++) {
      const extra = kind === "service" ? ["--port", String(port)] : [];
      const { ms: t, result } = await this.#deploy(dir, name, extra);
      if (!result.unchanged) throw new Error(`redeploy of ${name} was not "unchanged"`);
      unchanged.push(t);
    }
    return { label: name, files, first, next, cliExit, unchanged };
  }
}

async function main(): Promise<void> {
  console.log(`prisn deploy latency (${machineLine()}), ${ITERATIONS} new versions per case`);
  const floor = await cliFloor({ runs: 20 });
  await using h = new BenchHome("prisn-bench-deploy-");
  await h.ok("ls"); // starts the agent: every timed deploy talks to a warm one
  const client = new AgentClient(h.paths);
  const results: CaseResult[] = [];
  try {
    const bench = new DeployBench(h, client);
    for (const kind of ["job", "service"] as const) {
      for (const files of [10, 2_000]) {
        const r = await bench.run(kind, files);
        results.push(r);
        console.log(`  ${r.label}: done`);
      }
    }
  } finally {
    client.close();
  }

  console.log(
    "\nspawn of `prisn deploy` → job run completed / service answers with the new version (ms)",
  );
  printTable(
    ["case", "files", "first", "new p50", "new min", "new max", "cli exit p50", "unchanged p50"],
    results.map((r) => {
      const s = stats(r.next);
      return [
        r.label,
        String(r.files),
        ms(r.first),
        ms(s.p50),
        ms(s.min),
        ms(s.max),
        ms(stats(r.cliExit).p50),
        ms(stats(r.unchanged).p50),
      ];
    }),
  );
  console.log("\nCLI start floor, for context (no agent involved)");
  printTable(STATS_HEADERS, [statsRow("prisn --version", floor)]);
  console.log(
    "\nfirst: a new deployment; new: a changed file, so a new version of an existing one " +
      "(services roll: start new, wait ready, switch, drain old); cli exit: when " +
      "`prisn deploy` returned; unchanged: same content redeployed (nothing restarted).",
  );
}

if (import.meta.main) {
  try {
    await main();
  } catch (e) {
    console.error(`deploy_bench: ${(e as Error).stack ?? e}`);
    Deno.exit(1);
  }
}
