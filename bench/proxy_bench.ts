/**
 * The service port's balancer: wrk drives HTTP load at a Node upstream (1) directly, (2) through
 * prisn's kernel path as an agent runs it (sk_lookup steering, runtime/socket_steering.ts), and
 * with steering off (the nftables DNAT of runtime/kernel_balancer.ts, its table in place during its
 * own runs only, since a nat chain makes the host track every connection), (3) through prisn's userspace proxy as the agent runs it (the epoll engine: one worker
 * thread, runtime/epoll_proxy.ts), (4) through the same with Deno's copy loop (runtime/proxy.ts,
 * the engine where epoll is not available), (5) through the epoll engine with N workers on the
 * port (`--proxy-workers N`: a SO_REUSEPORT listener each) and (6) through nginx as an L4 `stream` proxy with 1 and N worker processes (each
 * target with its own, identical upstream process), in interleaved rounds of the same run, for three
 * loads: keep-alive with 16 connections, a new connection per request (`Connection: close`) and
 * keep-alive with 1,000 connections. It prints the median req/s, p50 and p99 latency, the proxy's
 * CPU per request and the whole host's CPU per request (the kernel path's work is the kernel's).
 * Then a rolling deploy, a scale and a rollback of a real 2-replica service under load, on each
 * path, counting failed requests.
 *
 * It never fails on a figure; it stops everything it started (upstream, nginx, workers, agents,
 * the nftables tables), also on error or Ctrl-C.
 *
 * ```sh
 * ./denow run -A bench/proxy_bench.ts [--duration 5] [--rounds 3] [--threads 2] [--workers N]
 *   [--cases keepalive,close,c1000] [--targets direct,sk_lookup,nftables,epoll,deno,workers,nginx]
 *   [--no-rollout]
 * ```
 * Needs wrk and node; nginx with its stream module (Debian: nginx libnginx-mod-stream) for the
 * nginx rows; root (CAP_NET_ADMIN) and nft (Debian: nftables) for the kernel rows. What is missing
 * is skipped with a line saying why.
 *
 * @module
 */

import process from "node:process";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { raiseFileLimit } from "../runtime/_libc.ts";
import { epollUnavailable } from "../runtime/epoll_proxy.ts";
import { KernelBalancer } from "../runtime/kernel_balancer.ts";
import { ServicePort } from "../runtime/service_port.ts";
import { BenchHome, freePort, sleep } from "./_util.ts";

const HOST = "127.0.0.1";

/** One wrk run's figures; NaN where wrk printed none. */
interface WrkResult {
  requestsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  requests: number;
  errors: number;
}

/** Something load is sent to. */
interface Target {
  name: string;
  /** Its name in `--targets`. */
  key: TargetKey;
  port: number;
  /** CPU seconds the proxy has used so far (user + system), when it can be read. */
  cpuSeconds?: () => number | undefined;
  /** Sets the target up for its run, and takes it down after (see the nftables row). */
  enter?: () => Promise<void>;
  leave?: () => Promise<void>;
}

/** One load shape. */
interface Case {
  key: string;
  title: string;
  connections: number;
  /** A new TCP connection per request. */
  close?: boolean;
}

const CASES: Case[] = [
  { key: "keepalive", title: "keep-alive, 16 connections", connections: 16 },
  { key: "close", title: "Connection: close, 16 connections", connections: 16, close: true },
  { key: "c1000", title: "keep-alive, 1,000 connections", connections: 1000 },
];

interface Figures {
  target: Target;
  runs: WrkResult[];
  cpuUsPerRequest: number[];
  hostCpuUsPerRequest: number[];
}

/** Things to stop, newest first. */
type Cleanup = () => Promise<void> | void;

const DIRECT = "direct (Node upstream)";
const STEERED = "prisn kernel (sk_lookup)";
const KERNEL = "prisn kernel (nftables)";
const USERSPACE = "prisn userspace (epoll)";
const DENO_LOOP = "prisn userspace (Deno loop)";

/** The rows, as `--targets` names them. */
const TARGET_KEYS = [
  "direct",
  "sk_lookup",
  "nftables",
  "epoll",
  "deno",
  "workers",
  "nginx",
] as const;
type TargetKey = typeof TARGET_KEYS[number];

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      duration: { type: "string", default: "5" },
      rounds: { type: "string", default: "3" },
      threads: { type: "string", default: "2" },
      workers: { type: "string", default: String(navigator.hardwareConcurrency) },
      cases: { type: "string", default: CASES.map((c) => c.key).join(",") },
      targets: { type: "string", default: TARGET_KEYS.join(",") },
      "no-rollout": { type: "boolean", default: false },
    },
  });
  const duration = Number(values.duration);
  const threads = Number(values.threads);
  const workers = Math.max(1, Number(values.workers));
  const rounds = Math.max(1, Number(values.rounds));
  const cases = CASES.filter((c) => values.cases.split(",").includes(c.key));
  const wanted = new Set(values.targets.split(","));
  const unknown = [...wanted].filter((k) => !(TARGET_KEYS as readonly string[]).includes(k));
  if (unknown.length > 0) {
    console.error(`unknown --targets ${unknown.join(",")} (known: ${TARGET_KEYS.join(",")})`);
    Deno.exit(2);
  }
  const row = (key: TargetKey) => wanted.has(key);

  if (!await installed("wrk")) {
    console.log("skip: wrk is not installed (Debian/Ubuntu: apt-get install wrk)");
    return;
  }
  if (!await installed("node")) {
    console.log("skip: node is not installed; the upstream is a Node HTTP server");
    return;
  }
  raiseFileLimit(); // 1,000 connections: wrk's, the proxies' and the upstream's descriptors

  const cleanups: Cleanup[] = [];
  let cleaning: Promise<void> | undefined;
  const cleanup = () =>
    cleaning ??= (async () => {
      for (const step of cleanups.reverse()) {
        try {
          await step();
        } catch (error) {
          console.error(`cleanup: ${error instanceof Error ? error.message : error}`);
        }
      }
    })();
  const onInterrupt = () => {
    console.error("interrupted: stopping what the bench started");
    cleanup().finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", onInterrupt);

  try {
    // One upstream per target (but the sk_lookup row, which shares direct's): connections to
    // one upstream leave conntrack entries (TIME_WAIT for 2 minutes under churn) whose tuples
    // would clash with the next target's and cost the kernel's NAT a search for a free tuple on
    // every connection.
    const upstreamFor = () => startUpstream(cleanups);
    const direct = await upstreamFor();
    const targets: Target[] = row("direct") ? [{ name: DIRECT, key: "direct", port: direct }] : [];

    // The kernel path as an agent runs it: sk_lookup steering (its table has no nat chain).
    const kernel = await KernelBalancer.open(`/tmp/prisn-proxy-bench-${crypto.randomUUID()}`);
    if ("unavailable" in kernel) console.log(`prisn kernel skipped: ${kernel.unavailable}`);
    else if (!row("sk_lookup")) await kernel.balancer.close();
    else if (kernel.balancer.steeringUnavailable) {
      console.log(`${STEERED} skipped: ${kernel.balancer.steeringUnavailable}`);
      await kernel.balancer.close();
    } else {
      cleanups.push(() => kernel.balancer.close());
      const port = new ServicePort({ port: 0, host: HOST, kernel: kernel.balancer });
      cleanups.push(() => port.close());
      await port.listen();
      // The direct row's upstream itself: a steered connection is one to that very socket (no
      // NAT, so no tuple can clash), and one process serving both rows leaves no difference
      // between two upstreams in the ratio.
      port.add({ id: "upstream", port: direct, host: HOST });
      await waitUntil(() => kernel.balancer.pathOf(port.port) === "sk_lookup", "the port steered");
      targets.push({ name: STEERED, key: "sk_lookup", port: port.port, cpuSeconds: ownCpuSeconds });
    }
    if (!("unavailable" in kernel) && row("nftables")) {
      // The DNAT path (steering off). Its table exists during its own runs only: a nat chain
      // turns conntrack on for every connection of the host, the other rows' too.
      const home = `/tmp/prisn-proxy-bench-${crypto.randomUUID()}`;
      const port = new ServicePort({ port: 0, host: HOST });
      cleanups.push(() => port.close());
      await port.listen();
      port.add({ id: "upstream", port: await upstreamFor(), host: HOST });
      let nat: KernelBalancer | undefined;
      const leave = async () => {
        await port.useKernel(undefined);
        await nat?.close();
        nat = undefined;
      };
      cleanups.push(leave);
      targets.push({
        name: KERNEL,
        key: "nftables",
        port: port.port,
        cpuSeconds: ownCpuSeconds,
        enter: async () => {
          const opened = await KernelBalancer.open(home, { steeringOff: "the bench's DNAT row" });
          if ("unavailable" in opened) throw new Error(opened.unavailable);
          nat = opened.balancer;
          await port.useKernel(nat);
        },
        leave,
      });
    }

    for (const engine of ["epoll", "deno"] as const) {
      if (!row(engine)) continue;
      const port = new ServicePort({
        port: 0,
        host: HOST,
        engine: engine === "epoll" ? "auto" : engine,
      });
      if (port.engine !== engine) {
        console.log(`${USERSPACE} skipped: ${port.engineFallback}`);
        continue;
      }
      cleanups.push(() => port.close());
      await port.listen();
      port.add({ id: "upstream", port: await upstreamFor(), host: HOST });
      targets.push({
        name: engine === "epoll" ? USERSPACE : DENO_LOOP,
        key: engine,
        port: port.port,
        cpuSeconds: ownCpuSeconds,
      });
    }

    if (workers > 1 && row("workers") && epollUnavailable(HOST) === undefined) {
      // As `prisn agent run --proxy-workers N` runs a port: N epoll worker threads, each with
      // its own SO_REUSEPORT listener.
      const proxy = new ServicePort({ port: 0, host: HOST, workers });
      cleanups.push(() => proxy.close());
      await proxy.listen();
      proxy.add({ id: "upstream", port: await upstreamFor(), host: HOST });
      targets.push({
        name: workersName(workers),
        key: "workers",
        port: proxy.port,
        cpuSeconds: ownCpuSeconds,
      });
    }

    for (const n of row("nginx") ? new Set([1, workers]) : []) {
      const nginx = await startNginx(await upstreamFor(), n, cleanups);
      if ("skip" in nginx) {
        console.log(`nginx skipped: ${nginx.skip}`);
        break;
      }
      targets.push(nginx);
    }

    console.log(
      `wrk -t${threads} -d${duration}s --latency, Node http upstream, ${rounds} interleaved ` +
        `round(s) per load, ${navigator.hardwareConcurrency} CPUs (wrk, upstream and proxies share them)`,
    );
    for (const load of cases) {
      console.log(`\n== ${load.title}`);
      const options = { duration, threads, connections: load.connections, close: load.close };
      for (const target of targets) {
        await target.enter?.();
        await wrk(url(target.port), { ...options, duration: 1 });
        await target.leave?.();
      }
      const figures: Figures[] = targets.map((target) => ({
        target,
        runs: [],
        cpuUsPerRequest: [],
        hostCpuUsPerRequest: [],
      }));
      for (let round = 1; round <= rounds; round++) {
        // Each round starts one target further on: no target always runs first or after another.
        const order = figures.map((_, i) => figures[(i + round - 1) % figures.length]);
        for (const entry of order) {
          await entry.target.enter?.();
          const before = entry.target.cpuSeconds?.();
          const hostBefore = hostCpuSeconds();
          const result = await wrk(url(entry.target.port), options);
          const hostAfter = hostCpuSeconds();
          const after = entry.target.cpuSeconds?.();
          await entry.target.leave?.();
          entry.runs.push(result);
          const perRequest = (a?: number, b?: number) =>
            a !== undefined && b !== undefined && result.requests > 0
              ? (b - a) * 1e6 / result.requests
              : NaN;
          entry.cpuUsPerRequest.push(perRequest(before, after));
          entry.hostCpuUsPerRequest.push(perRequest(hostBefore, hostAfter));
          console.log(
            `  round ${round} ${entry.target.name.padEnd(28)} ${
              fmtRate(result.requestsPerSec).padStart(8)
            } req/s  p50 ${fmtMs(result.p50Ms)}  p99 ${fmtMs(result.p99Ms)}`,
          );
        }
      }
      report(figures, workers);
    }

    if (!values["no-rollout"]) {
      await rolloutUnderLoad(
        "balancer" in kernel ? ["kernel", "userspace"] : ["userspace"],
        threads,
      );
    }
  } finally {
    Deno.removeSignalListener("SIGINT", onInterrupt);
    await cleanup();
  }
}

function url(port: number): string {
  return `http://${HOST}:${port}/`;
}

function report(figures: Figures[], workers: number): void {
  console.log("");
  console.log(
    `${"target".padEnd(28)} ${"req/s".padStart(9)} ${"p50".padStart(9)} ${"p99".padStart(9)} ` +
      `${"proxy cpu/req".padStart(14)} ${"host cpu/req".padStart(13)} ${"errors".padStart(7)}`,
  );
  for (const { target, runs, cpuUsPerRequest, hostCpuUsPerRequest } of figures) {
    const rate = median(runs.map((r) => r.requestsPerSec));
    const us = (v: number) => Number.isNaN(v) ? "-" : `${v.toFixed(1)} µs`;
    console.log(
      `${target.name.padEnd(28)} ${fmtRate(rate).padStart(9)} ` +
        `${fmtMs(median(runs.map((r) => r.p50Ms))).padStart(9)} ` +
        `${fmtMs(median(runs.map((r) => r.p99Ms))).padStart(9)} ` +
        `${us(median(cpuUsPerRequest)).padStart(14)} ${
          us(median(hostCpuUsPerRequest)).padStart(13)
        } ` +
        `${String(runs.reduce((sum, r) => sum + r.errors, 0)).padStart(7)}`,
    );
  }
  // The median of the rounds' own ratios: two targets of one round ran minutes apart at most,
  // so a machine that is slower in one round than in another moves both.
  const runsOf = new Map(figures.map((f) => [f.target.name, f.runs]));
  const ratio = (a: string, b: string, of: keyof WrkResult = "requestsPerSec") => {
    const x = runsOf.get(a);
    const y = runsOf.get(b);
    if (!x || !y) return "n/a";
    const each = x.map((r, i) => r[of] / y[i][of]).filter((v) => !Number.isNaN(v));
    if (each.length < 2) return fmtRatio(median(each));
    return `${fmtRatio(median(each))} [${fmtRatio(Math.min(...each))}–${
      fmtRatio(Math.max(...each))
    }]`;
  };
  const lines = [
    `sk_lookup/direct ${ratio(STEERED, DIRECT)}`,
    `nftables/direct ${ratio(KERNEL, DIRECT)}`,
    `userspace/direct ${ratio(USERSPACE, DIRECT)}`,
    `userspace/nginx(1) ${ratio(USERSPACE, nginxName(1))}`,
    `deno-loop/nginx(1) ${ratio(DENO_LOOP, nginxName(1))}`,
    `p99 userspace/nginx(1) ${ratio(USERSPACE, nginxName(1), "p99Ms")}`,
  ];
  if (workers > 1) {
    lines.push(
      `userspace(${workers})/nginx(${workers}) ${ratio(workersName(workers), nginxName(workers))}`,
    );
  }
  console.log(`\n${lines.join("   ")}   (medians of each round's ratio [lowest–highest])`);
}

/**
 * A 2-replica Node service deployed through the real CLI and agent, on each balancer: wrk sends a
 * new connection per request while the service is deployed at a new version, scaled to 3 and
 * rolled back; prints the requests and the failed ones (socket errors and non-2xx).
 */
async function rolloutUnderLoad(balancers: string[], threads: number): Promise<void> {
  console.log(
    "\n== rolling deploy, scale 2→3 and rollback under load (wrk -c16, Connection: close)",
  );
  for (const balancer of balancers) {
    await using home = new BenchHome("prisn-proxy-bench-");
    const port = freePort();
    const app = `${home.dir}/app`;
    const write = (stamp: string) => {
      Deno.mkdirSync(app, { recursive: true });
      Deno.writeTextFileSync(
        `${app}/main.js`,
        `require("node:http").createServer((q, s) => s.end(${JSON.stringify(stamp)}))` +
          `.listen(Number(process.env.PORT), "127.0.0.1");\n`,
      );
      Deno.writeTextFileSync(
        `${app}/prisn.toml`,
        `port = ${port}\nreplicas = 2\nbalancer = "${balancer}"\n`,
      );
    };
    write("one");
    await home.ok("deploy", app, "--name", "web");
    const load = new Deno.Command("wrk", {
      args: [`-t${threads}`, "-c16", "-d600s", "-H", "Connection: close", url(port)],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const output = load.output();
    try {
      await sleep(1000);
      write("two");
      await home.ok("deploy", app, "--name", "web");
      await home.ok("scale", "web", "3");
      await home.ok("rollback", "web");
      await sleep(1000);
    } finally {
      load.kill("SIGINT"); // wrk stops and prints its figures
    }
    const result = parseWrk(new TextDecoder().decode((await output).stdout));
    const info = JSON.parse((await home.ok("get", "web", "-o", "json")).stdout).balancer;
    const served = [info?.kind, info?.path].filter(Boolean).join(", ");
    console.log(
      `  ${`${balancer} (get says ${served})`.padEnd(34)} ${result.requests} requests, ` +
        `${result.errors} failed, ${fmtRate(result.requestsPerSec)} req/s`,
    );
  }
}

/** Runs wrk once; figures it did not print come back as NaN. */
async function wrk(
  target: string,
  options: { duration: number; connections: number; threads: number; close?: boolean },
): Promise<WrkResult> {
  const args = [
    `-t${Math.min(options.threads, options.connections)}`,
    `-c${options.connections}`,
    `-d${options.duration}s`,
    "--latency",
    // wrk counts an answer slower than its timeout (2 s by default) as an error and leaves it out
    // of the latencies: with 1,000 connections the Node upstream keeps some waiting that long
    // (direct too), so the errors were slow answers and p99 left out the slowest. Longer than any
    // run: every answer is a latency, an error is a failure.
    "--timeout",
    "60s",
    ...options.close ? ["-H", "Connection: close"] : [],
    target,
  ];
  const output = await new Deno.Command("wrk", { args, stdout: "piped", stderr: "piped" })
    .output();
  const text = new TextDecoder().decode(output.stdout);
  if (!output.success) {
    console.error(`wrk ${args.join(" ")} failed: ${new TextDecoder().decode(output.stderr)}`);
  }
  return parseWrk(text);
}

/** Reads req/s, p50, p99, request count and errors from wrk's report. */
function parseWrk(text: string): WrkResult {
  const rate = text.match(/Requests\/sec:\s+([\d.]+)/);
  const latency = (p: string) => {
    const m = text.match(new RegExp(`^\\s*${p}(?:\\.0+)?%\\s+([\\d.]+)(us|ms|s|m)\\b`, "m"));
    const unit: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000 };
    return m ? Number(m[1]) * unit[m[2]] : NaN;
  };
  const count = text.match(/^\s*(\d+) requests in/m);
  const socket = text.match(
    /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/,
  );
  const non2xx = text.match(/Non-2xx or 3xx responses: (\d+)/);
  return {
    requestsPerSec: rate ? Number(rate[1]) : NaN,
    p50Ms: latency("50"),
    p99Ms: latency("99"),
    requests: count ? Number(count[1]) : 0,
    errors: (socket ? socket.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0) +
      (non2xx ? Number(non2xx[1]) : 0),
  };
}

/** Starts bench/_upstream.mjs; resolves to its port. */
async function startUpstream(cleanups: Cleanup[]): Promise<number> {
  const script = fileURLToPath(new URL("./_upstream.mjs", import.meta.url));
  const child = new Deno.Command("node", {
    args: [script, "0"],
    stdout: "piped",
    stderr: "inherit",
  })
    .spawn();
  cleanups.push(() => stop(child, "upstream"));
  const reader = child.stdout.getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("the Node upstream exited before printing its port");
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  child.stdout.pipeTo(new WritableStream()).catch(() => {});
  const port = Number(text.trim().split("\n")[0]);
  if (!Number.isInteger(port) || port <= 0) throw new Error(`the upstream printed "${text}"`);
  return port;
}

function workersName(workers: number): string {
  return `prisn userspace (epoll ×${workers})`;
}

function nginxName(workers: number): string {
  return `nginx stream (${workers} worker${workers === 1 ? "" : "s"})`;
}

/** Starts nginx with `workers` worker processes as an L4 proxy to the upstream, or says why not. */
async function startNginx(
  upstream: number,
  workers: number,
  cleanups: Cleanup[],
): Promise<Target | { skip: string }> {
  let version: Deno.CommandOutput;
  try {
    version = await new Deno.Command("nginx", { args: ["-V"], stdout: "piped", stderr: "piped" })
      .output();
  } catch {
    return { skip: "nginx is not installed (Debian/Ubuntu: apt-get install nginx)" };
  }
  const configure = new TextDecoder().decode(version.stderr) +
    new TextDecoder().decode(version.stdout);
  let loadModule = "";
  if (/--with-stream=dynamic\b/.test(configure)) {
    const modules = configure.match(/--modules-path=(\S+)/)?.[1] ?? "/usr/lib/nginx/modules";
    const module = `${modules}/ngx_stream_module.so`;
    if (!await exists(module)) {
      return {
        skip: `nginx builds "stream" as a dynamic module but ${module} is missing ` +
          `(Debian/Ubuntu: apt-get install libnginx-mod-stream)`,
      };
    }
    loadModule = `load_module ${module};\n`;
  } else if (!/--with-stream(\s|$)/.test(configure)) {
    return { skip: "this nginx was built without the stream module (--with-stream)" };
  }

  const dir = await Deno.makeTempDir({ prefix: "prisn-bench-nginx-" });
  cleanups.push(() => Deno.remove(dir, { recursive: true }));
  const port = freePort();
  const conf = `${dir}/nginx.conf`;
  await Deno.writeTextFile(
    conf,
    `${loadModule}daemon off;
worker_processes ${workers};
worker_rlimit_nofile 8192;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
stream {
  upstream bench_upstream { server ${HOST}:${upstream}; }
  server { listen ${HOST}:${port}${workers > 1 ? " reuseport" : ""}; proxy_pass bench_upstream; }
}
`,
  );
  const child = new Deno.Command("nginx", {
    args: ["-c", conf, "-p", dir, "-e", `${dir}/error.log`],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  cleanups.push(() => stop(child, "nginx"));
  let exited = false;
  child.status.then(() => exited = true);
  const deadline = Date.now() + 5000;
  while (!await accepts(port)) {
    if (exited || Date.now() > deadline) {
      const log = await Deno.readTextFile(`${dir}/error.log`).catch(() => "");
      const why = exited ? (await stderr) + log : "it did not listen within 5 s";
      return { skip: `nginx did not start: ${why.trim().split("\n").slice(-3).join(" | ")}` };
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const master = child.pid;
  return {
    name: nginxName(workers),
    key: "nginx",
    port,
    cpuSeconds: () => processTreeCpuSeconds(master),
  };
}

/** This process's CPU seconds (the in-process proxies; the bench itself idles meanwhile). */
function ownCpuSeconds(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

/** The whole host's busy CPU seconds (all but idle and iowait), from /proc/stat (Linux). */
function hostCpuSeconds(): number | undefined {
  try {
    const fields = Deno.readTextFileSync("/proc/stat").split("\n")[0].trim().split(/\s+/).slice(1)
      .map(Number);
    const busy = fields.reduce((sum, v, i) => i === 3 || i === 4 ? sum : sum + v, 0);
    return busy / clockTicks();
  } catch {
    return undefined;
  }
}

/** CPU seconds of a process and its children from /proc (Linux), else undefined. */
function processTreeCpuSeconds(pid: number): number | undefined {
  try {
    const children = Deno.readTextFileSync(`/proc/${pid}/task/${pid}/children`)
      .trim().split(/\s+/).filter(Boolean).map(Number);
    let ticks = 0;
    for (const id of [pid, ...children]) {
      // Fields after the ")" that ends the command name; utime and stime are the 12th and 13th.
      const stat = Deno.readTextFileSync(`/proc/${id}/stat`);
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(fields[11]) + Number(fields[12]);
    }
    return ticks / clockTicks();
  } catch {
    return undefined;
  }
}

let ticksPerSecond: number | undefined;
function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    try {
      const out = new Deno.Command("getconf", { args: ["CLK_TCK"] }).outputSync();
      ticksPerSecond = Number(new TextDecoder().decode(out.stdout).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

/** SIGTERM, then SIGKILL if it has not exited within 3 s. */
async function stop(child: Deno.ChildProcess, what: string): Promise<void> {
  try {
    child.kill("SIGTERM");
  } catch {
    return; // already exited
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<true>((resolve) => timer = setTimeout(() => resolve(true), 3000));
  const result = await Promise.race([child.status, timedOut]);
  clearTimeout(timer);
  if (result === true) {
    console.error(`${what} ignored SIGTERM for 3 s: killing it`);
    try {
      child.kill("SIGKILL");
    } catch {
      // exited meanwhile
    }
    await child.status;
  }
}

async function installed(command: string): Promise<boolean> {
  try {
    await new Deno.Command(command, { args: ["--version"], stdout: "null", stderr: "null" })
      .output();
    return true;
  } catch {
    return false;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

async function accepts(port: number): Promise<boolean> {
  try {
    const conn = await Deno.connect({ hostname: HOST, port });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

/** Polls `condition` every 50 ms for up to 10 s. */
async function waitUntil(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

function median(values: number[]): number {
  const sorted = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function fmtRate(rate: number): string {
  return Number.isNaN(rate) ? "n/a" : Math.round(rate).toLocaleString("en-US");
}

function fmtMs(ms: number): string {
  if (Number.isNaN(ms)) return "n/a";
  return ms < 1 ? `${Math.round(ms * 1000)} µs` : `${ms.toFixed(2)} ms`;
}

function fmtRatio(ratio: number): string {
  return Number.isFinite(ratio) ? ratio.toFixed(2) : "n/a";
}

if (import.meta.main) {
  try {
    await main();
  } catch (error) {
    console.error(`proxy bench stopped: ${error instanceof Error ? error.message : error}`);
    Deno.exitCode = 1;
  }
}
