import type { ExitStatus, ProcessDriver, ProcessHandle, StartRequest } from "./driver.ts";

/** How one fake process behaves. Every field is optional: the default runs until stopped. */
export interface FakeBehavior {
  /** Throw this from start() instead of starting (as a missing program does). */
  failStart?: string;
  /** Exit by itself after this long. @default never: runs until stopped */
  runMs?: number;
  /** The exit code when it exits by itself. @default 0 */
  exitCode?: number;
  /** Report an OOM kill when it exits by itself. @default false */
  oomKilled?: boolean;
  /**
   * Answer on `PORT` (from its env), so readiness and liveness probes pass: any TCP connection
   * is accepted and any HTTP request gets 200. @default true
   */
  ready?: boolean;
  /** Become ready only after this long. @default 0 */
  readyAfterMs?: number;
  /** Stay alive on SIGTERM: only the SIGKILL after the grace ends it. @default false */
  ignoreSigterm?: boolean;
  /** Lines written to its stdout as it starts. @default none */
  output?: string[];
}

/** One start the fake driver saw. */
export interface FakeStart {
  request: StartRequest;
  /** Starts of the same `request.name` so far, this one included (1 for the first). */
  attempt: number;
  at: number;
  handle?: FakeProcess;
}

/** Fake pids start above the kernel's largest pid (2^22), so nothing real is ever signalled. */
let nextPid = 5_000_000;

const encoder = new TextEncoder();

/**
 * A configurable fake process driver for exact, fast supervisor tests (as Nomad's mock driver):
 * `behave` decides per start (by name and attempt) whether the process fails to start, how long it
 * runs, how it exits, whether it answers probes and how it takes SIGTERM. Readiness is real: a
 * ready fake listens on its PORT on loopback, so the supervisor's own probes are what is tested.
 */
export class FakeDriver implements ProcessDriver {
  readonly starts: FakeStart[] = [];
  #attempts = new Map<string, number>();

  constructor(readonly behave: (start: FakeStart) => FakeBehavior = () => ({})) {}

  /** Fake processes still running. */
  get running(): FakeProcess[] {
    return this.starts.flatMap((s) => s.handle?.running ? [s.handle] : []);
  }

  start(request: StartRequest): Promise<ProcessHandle> {
    const attempt = (this.#attempts.get(request.name) ?? 0) + 1;
    this.#attempts.set(request.name, attempt);
    const start: FakeStart = { request, attempt, at: Date.now() };
    this.starts.push(start);
    const behavior = this.behave(start);
    if (behavior.failStart) return Promise.reject(new Error(behavior.failStart));
    start.handle = new FakeProcess(request, behavior);
    return Promise.resolve(start.handle);
  }

  /** Stops every fake still running (for a test's cleanup). */
  async stopAll(): Promise<void> {
    await Promise.all(this.running.map((p) => p.stop(0)));
  }
}

/** A fake process: timers and, when ready, a loopback listener on its PORT. */
export class FakeProcess implements ProcessHandle {
  readonly pid = nextPid++;
  readonly startTicks = 0;
  readonly startedAt = Date.now();
  readonly exited: Promise<ExitStatus>;
  /** Signals it was sent, in order. */
  readonly signals: string[] = [];
  #done = false;
  #end!: (status: ExitStatus) => void;
  #timers: ReturnType<typeof setTimeout>[] = [];
  #server?: Deno.HttpServer;
  #stopping?: Promise<ExitStatus>;

  constructor(readonly request: StartRequest, readonly behavior: FakeBehavior) {
    this.exited = new Promise((resolve) => this.#end = resolve);
    const { output } = request;
    for (const line of behavior.output ?? []) {
      const bytes = encoder.encode(line + "\n");
      if ("feed" in output) output.feed(bytes, "out");
      else Deno.writeFileSync(output.out, bytes, { append: true });
    }
    const port = Number(request.spec.env.PORT);
    if (port && behavior.ready !== false) {
      this.#timers.push(setTimeout(() => this.#listen(port), behavior.readyAfterMs ?? 0));
    }
    if (behavior.runMs !== undefined) {
      this.#timers.push(setTimeout(() => {
        this.#exit({
          code: behavior.exitCode ?? 0,
          oomKilled: behavior.oomKilled ?? false,
          ...(behavior.oomKilled ? { signal: "SIGKILL" as const } : {}),
        });
      }, behavior.runMs));
    }
  }

  get running(): boolean {
    return !this.#done;
  }

  stop(graceMs: number): Promise<ExitStatus> {
    this.#stopping ??= (async () => {
      if (this.#done) return await this.exited;
      this.signals.push("SIGTERM");
      if (!this.behavior.ignoreSigterm) {
        this.#exit({ code: 143, signal: "SIGTERM", oomKilled: false });
      } else {
        await new Promise((r) => this.#timers.push(setTimeout(r, graceMs)));
        this.signals.push("SIGKILL");
        this.#exit({ code: 137, signal: "SIGKILL", oomKilled: false });
      }
      return await this.exited;
    })();
    return this.#stopping;
  }

  /** Stops answering probes while it keeps running (a hung process), so liveness fails. */
  async hang(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    for (const t of this.#timers) clearTimeout(t);
    await server?.shutdown();
  }

  #listen(port: number): void {
    if (this.#done) return;
    this.#server = Deno.serve(
      { hostname: "127.0.0.1", port, onListen: () => {} },
      () => new Response("ok\n"),
    );
  }

  #exit(status: ExitStatus): void {
    if (this.#done) return;
    this.#done = true;
    for (const t of this.#timers) clearTimeout(t);
    const server = this.#server;
    this.#server = undefined;
    // The listener goes before the exit is reported, as a real process's port closes with it.
    (server ? server.shutdown() : Promise.resolve()).then(() => this.#end(status));
  }
}
