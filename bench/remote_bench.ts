/**
 * `prisn ls` over the remote API (`--listen` on loopback, bearer token) against the same agent's
 * unix socket, in the same run: 50 job deployments, then the CLI (spawn → exit) and the client
 * in-process (one GET /v1/deployments), round-robin, RUNS times each (default 30). With openssl
 * installed, HTTPS through a CA made for the run is timed too.
 *
 *   ./denow run -A bench/remote_bench.ts
 *
 * Prints figures; never fails on a time.
 */
import { join } from "node:path";
import { AgentClient, type RemoteTarget } from "../runtime/client.ts";
import { selfSignedCa } from "../tests/_tls.ts";
import {
  BenchHome,
  freePort,
  machineLine,
  printTable,
  PRISN,
  sleep,
  stats,
  STATS_HEADERS,
  statsRow,
  timed,
  writeProject,
} from "./_util.ts";

const RUNS = Number(Deno.env.get("BENCH_RUNS") ?? 30);
const DEPLOYMENTS = 50;

async function hasOpenssl(): Promise<boolean> {
  return await new Deno.Command("openssl", { args: ["version"], stdout: "null", stderr: "null" })
    .output().then((o) => o.success, () => false);
}

async function main(): Promise<void> {
  console.log(
    `prisn ls: unix socket vs remote API (${machineLine()}): ${DEPLOYMENTS} deployments, ${RUNS} runs per case`,
  );
  await using h = new BenchHome("prisn-bench-remote-");
  const tls = await hasOpenssl() ? await selfSignedCa(h.dir) : undefined;
  if (!tls) console.log("(no openssl: HTTPS not measured)");
  const port = freePort();
  const args = ["agent", "run", "--listen", `127.0.0.1:${port}`];
  if (tls) {
    args.push("--tls-cert", join(h.dir, "server.pem"), "--tls-key", join(h.dir, "server.key"));
  }
  const agent = new Deno.Command(PRISN, { args, env: h.env, stdout: "null", stderr: "null" })
    .spawn();
  const local = new AgentClient(h.paths);
  const clients: AgentClient[] = [local];
  try {
    for (let i = 0; i < 300 && !(await local.ping()); i++) await sleep(100);
    const token = (await Deno.readTextFile(join(h.home, "admin.token"))).trim();
    const server = `${tls ? "https://localhost" : "http://127.0.0.1"}:${port}`;
    const target: RemoteTarget = { server, token, ca: tls?.ca };
    const remote = new AgentClient(target);
    clients.push(remote);
    const job = writeProject(join(h.dir, "job"), { "main.sh": "#!/usr/bin/env bash\necho done\n" });
    for (let i = 0; i < DEPLOYMENTS; i++) {
      await local.deploy({ source: job, flags: { name: `job-${i}` } });
    }
    const env = { ...h.env };
    if (tls) {
      env.XDG_CONFIG_HOME = join(h.dir, "config");
      const add = await timed(PRISN, [
        "context",
        "add",
        "bench",
        "--server",
        server,
        "--token",
        token,
        "--ca",
        join(h.dir, "ca.pem"),
      ], { env });
      if (add.code !== 0) throw new Error(`context add: ${add.stderr}`);
    }
    const scheme = tls ? "HTTPS" : "HTTP";
    const cli: Array<[string, string[], Record<string, string>]> = [
      ["prisn ls (unix socket)", ["ls"], h.env],
      [
        `prisn ls (remote, ${scheme})`,
        tls ? ["--context", "bench", "ls"] : ["--server", server, "--token", token, "ls"],
        env,
      ],
    ];
    const api: Array<[string, AgentClient]> = [
      ["GET /v1/deployments (unix socket)", local],
      [`GET /v1/deployments (remote, ${scheme})`, remote],
    ];
    const cliMs: number[][] = cli.map(() => []);
    const apiMs: number[][] = api.map(() => []);
    for (let i = -3; i < RUNS; i++) {
      for (const [k, [label, a, e]] of cli.entries()) {
        const r = await timed(PRISN, a, { env: e });
        if (r.code !== 0) throw new Error(`${label} exited ${r.code}: ${r.stderr.trim()}`);
        if (i >= 0) cliMs[k].push(r.ms);
      }
      for (const [k, [, client]] of api.entries()) {
        const start = performance.now();
        await client.deployments();
        if (i >= 0) apiMs[k].push(performance.now() - start);
      }
    }
    console.log("\nCLI, spawn → exit (ms)");
    printTable(STATS_HEADERS, cli.map(([label], k) => statsRow(label, stats(cliMs[k]))));
    console.log("\nin-process client, keep-alive (ms)");
    printTable(STATS_HEADERS, api.map(([label], k) => statsRow(label, stats(apiMs[k]))));
  } finally {
    for (const c of clients) c.close();
    await h.close();
    await agent.status;
  }
}

if (import.meta.main) {
  try {
    await main();
  } catch (e) {
    console.error(`remote_bench: ${(e as Error).stack ?? e}`);
    Deno.exit(1);
  }
}
