import { join } from "node:path";
import type { LogSink } from "../core/log_store.ts";
import type { OutputCollector } from "./output_collector.ts";

/**
 * A replica's stdout and stderr as two named pipes that outlive its restarts. Each start only
 * redirects into them (`wrap`), so a restart costs the agent no new pipe objects: Deno keeps the
 * native memory of a spawned child's pipes until much later, which made the agent's resident
 * memory climb through crash loops. The agent's {@link OutputCollector} reads them without a
 * thread or a pending read per FIFO, and holds each open read-write, so no reader ever sees
 * end-of-file between starts.
 */
export class OutputFifos {
  #fds: number[];

  private constructor(
    readonly collector: OutputCollector,
    readonly out: string,
    readonly err: string,
    fds: number[],
  ) {
    this.#fds = fds;
  }

  /** Makes the FIFOs under `dir` (mode 0600) and starts collecting them into `log`. */
  static async create(
    collector: OutputCollector,
    dir: string,
    name: string,
    log: LogSink,
  ): Promise<OutputFifos> {
    await Deno.mkdir(dir, { recursive: true });
    const base = join(dir, `${name}.${crypto.randomUUID().slice(0, 8)}`);
    const fds: number[] = [];
    const made: string[] = [];
    try {
      for (const source of ["out", "err"] as const) {
        const path = `${base}.${source}`;
        if (!collector.mkfifo(path)) throw new Error(`cannot make FIFO ${path}`);
        made.push(path);
        fds.push(collector.add(path, (b) => log.feed(b, source)));
      }
    } catch (e) {
      for (const fd of fds) collector.remove(fd);
      for (const path of made) await Deno.remove(path).catch(() => {});
      throw e;
    }
    return new OutputFifos(collector, `${base}.out`, `${base}.err`, fds);
  }

  /** The command with its stdout and stderr sent into the FIFOs (a fixed script; args verbatim). */
  wrap(command: string, args: string[]): { command: string; args: string[] } {
    return {
      command: "/bin/sh",
      args: [
        "-c",
        'exec >"$1" 2>"$2"; shift 2; exec "$@"',
        "sh",
        this.out,
        this.err,
        command,
        ...args,
      ],
    };
  }

  /** Reads what the FIFOs hold now: after a start exited, all it wrote reaches the log. */
  flush(): void {
    for (const fd of this.#fds) this.collector.flush(fd);
  }

  /**
   * Reads what the replica left in the FIFOs, stops collecting them and removes them. A
   * descendant that escaped the replica's group and still writes gets EPIPE from then on.
   */
  async close(): Promise<void> {
    for (const fd of this.#fds.splice(0)) this.collector.remove(fd);
    for (const path of [this.out, this.err]) await Deno.remove(path).catch(() => {});
  }
}
