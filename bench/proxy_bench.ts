/**
 * L4 proxy throughput: wrk drives HTTP keep-alive load at a Node upstream (1) directly,
 * (2) through prisn's {@linkcode TcpProxy} and (3) through nginx as an L4 `stream` proxy, in
 * interleaved rounds of the same run, and prints the median req/s, p99 latency and proxy CPU per
 * request of each. It never fails on a figure; it stops everything it started, also on error or
 * Ctrl-C.
 *
 * ```sh
 * ./denow run -A bench/proxy_bench.ts [--duration 5] [--rounds 3] [--connections 16]
 *   [--threads 2] [--with-node-net]
 * ```
 * `--with-node-net` adds a `node:net` `pipe()` proxy (the alternative TcpProxy was measured
 * against) as a fourth target.
 *
 * @module
 */

import net from "node:net";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { TcpProxy } from "../runtime/proxy.ts";

const HOST = "127.0.0.1";

/** One wrk run's figures; NaN where wrk printed none. */
interface WrkResult {
  requestsPerSec: number;
  p99Ms: number;
  requests: number;
  errors: number;
}

/** Something load is sent to. */
interface Target {
  name: string;
  port: number;
  /** CPU seconds the proxy has used so far (user + system), when it can be read. */
  cpuSeconds?: () => number | undefined;
}

interface Figures {
  target: Target;
  runs: WrkResult[];
  cpuUsPerRequest: number[];
}

/** Things to stop, newest first. */
type Cleanup = () => Promise<void> | void;

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      duration: { type: "string", default: "5" },
      rounds: { type: "string", default: "3" },
      connections: { type: "string", default: "16" },
      threads: { type: "string", default: "2" },
      "with-node-net": { type: "boolean", default: false },
    },
  });
  const wrkArgs = {
    duration: Number(values.duration),
    connections: Number(values.connections),
    threads: Number(values.threads),
  };
  const rounds = Math.max(1, Number(values.rounds));

  if (!await installed("wrk")) {
    console.log("skip: wrk is not installed (Debian/Ubuntu: apt-get install wrk)");
    return;
  }
  if (!await installed("node")) {
    console.log("skip: node is not installed; the upstream is a Node HTTP server");
    return;
  }

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
    const upstream = await startUpstream(cleanups);
    const targets: Target[] = [{ name: "direct (Node upstream)", port: upstream }];

    const proxy = new TcpProxy({ port: 0, host: HOST });
    cleanups.push(() => proxy.close());
    await proxy.listen();
    proxy.add({ id: "upstream", port: upstream, host: HOST });
    targets.push({ name: "prisn TcpProxy", port: proxy.port, cpuSeconds: ownCpuSeconds });

    const nginx = await startNginx(upstream, cleanups);
    if ("skip" in nginx) console.log(`nginx skipped: ${nginx.skip}`);
    else targets.push(nginx);

    if (values["with-node-net"]) {
      const port = await startNodeNetProxy(upstream, cleanups);
      targets.push({ name: "node:net pipe (not used)", port, cpuSeconds: ownCpuSeconds });
    }

    const url = (port: number) => `http://${HOST}:${port}/`;
    console.log(
      `wrk -t${wrkArgs.threads} -c${wrkArgs.connections} -d${wrkArgs.duration}s --latency, ` +
        `Node http upstream (keep-alive), ${rounds} interleaved round(s), ${navigator.hardwareConcurrency} CPUs`,
    );
    for (const target of targets) await wrk(url(target.port), { ...wrkArgs, duration: 1 });

    const figures: Figures[] = targets.map((target) => ({ target, runs: [], cpuUsPerRequest: [] }));
    for (let round = 1; round <= rounds; round++) {
      for (const entry of figures) {
        const before = entry.target.cpuSeconds?.();
        const result = await wrk(url(entry.target.port), wrkArgs);
        const after = entry.target.cpuSeconds?.();
        entry.runs.push(result);
        const cpu = before !== undefined && after !== undefined && result.requests > 0
          ? (after - before) * 1e6 / result.requests
          : NaN;
        entry.cpuUsPerRequest.push(cpu);
        console.log(
          `  round ${round} ${entry.target.name.padEnd(26)} ${fmtRate(result.requestsPerSec)} ` +
            `req/s  p99 ${fmtMs(result.p99Ms)}`,
        );
      }
    }
    report(figures);
  } finally {
    Deno.removeSignalListener("SIGINT", onInterrupt);
    await cleanup();
  }
}

function report(figures: Figures[]): void {
  console.log("");
  console.log(
    `${"target".padEnd(26)} ${"req/s".padStart(9)} ${"p99".padStart(9)} ` +
      `${"proxy cpu/req".padStart(14)} ${"errors".padStart(7)}`,
  );
  const rates = new Map<string, number>();
  for (const { target, runs, cpuUsPerRequest } of figures) {
    const rate = median(runs.map((r) => r.requestsPerSec));
    rates.set(target.name, rate);
    const cpu = median(cpuUsPerRequest);
    console.log(
      `${target.name.padEnd(26)} ${fmtRate(rate).padStart(9)} ` +
        `${fmtMs(median(runs.map((r) => r.p99Ms))).padStart(9)} ` +
        `${(Number.isNaN(cpu) ? "-" : `${cpu.toFixed(1)} µs`).padStart(14)} ` +
        `${String(runs.reduce((sum, r) => sum + r.errors, 0)).padStart(7)}`,
    );
  }
  const prisn = rates.get("prisn TcpProxy") ?? NaN;
  const direct = rates.get("direct (Node upstream)") ?? NaN;
  const nginx = rates.get("nginx stream (1 worker)");
  let ratios = `prisn/direct ${fmtRatio(prisn / direct)}`;
  ratios += nginx === undefined
    ? "   prisn/nginx n/a"
    : `   prisn/nginx ${fmtRatio(prisn / nginx)}`;
  console.log(`\n${ratios}   (medians of the rounds)`);
}

/** Runs wrk once; figures it did not print come back as NaN. */
async function wrk(
  url: string,
  options: { duration: number; connections: number; threads: number },
): Promise<WrkResult> {
  const args = [
    `-t${options.threads}`,
    `-c${options.connections}`,
    `-d${options.duration}s`,
    "--latency",
    url,
  ];
  const output = await new Deno.Command("wrk", { args, stdout: "piped", stderr: "piped" })
    .output();
  const text = new TextDecoder().decode(output.stdout);
  if (!output.success) {
    console.error(`wrk ${args.join(" ")} failed: ${new TextDecoder().decode(output.stderr)}`);
  }
  return parseWrk(text);
}

/** Reads req/s, p99, request count and errors from wrk's report. */
function parseWrk(text: string): WrkResult {
  const rate = text.match(/Requests\/sec:\s+([\d.]+)/);
  const p99 = text.match(/^\s*99(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\b/m);
  const count = text.match(/^\s*(\d+) requests in/m);
  const socket = text.match(
    /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/,
  );
  const non2xx = text.match(/Non-2xx or 3xx responses: (\d+)/);
  const unit: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000 };
  return {
    requestsPerSec: rate ? Number(rate[1]) : NaN,
    p99Ms: p99 ? Number(p99[1]) * unit[p99[2]] : NaN,
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

/** Starts nginx as an L4 proxy to the upstream, or says why it cannot. */
async function startNginx(
  upstream: number,
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
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
stream {
  upstream bench_upstream { server ${HOST}:${upstream}; }
  server { listen ${HOST}:${port}; proxy_pass bench_upstream; }
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
    name: "nginx stream (1 worker)",
    port,
    cpuSeconds: () => processTreeCpuSeconds(master),
  };
}

/** A `node:net` proxy that pipes sockets both ways: the alternative TcpProxy was measured against. */
function startNodeNetProxy(upstream: number, cleanups: Cleanup[]): Promise<number> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstreamSocket = net.connect(upstream, HOST);
    client.setNoDelay(true);
    upstreamSocket.setNoDelay(true);
    for (const socket of [client, upstreamSocket]) {
      sockets.add(socket);
      socket.on("error", () => {
        client.destroy();
        upstreamSocket.destroy();
      });
      socket.on("close", () => sockets.delete(socket));
    }
    client.pipe(upstreamSocket);
    upstreamSocket.pipe(client);
  });
  cleanups.push(() =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const socket of sockets) socket.destroy();
    })
  );
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, HOST, () => resolve((server.address() as net.AddressInfo).port));
  });
}

/** This process's CPU seconds (the in-process proxies; the bench itself idles meanwhile). */
function ownCpuSeconds(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
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

function freePort(): number {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  const port = listener.addr.port;
  listener.close();
  return port;
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
