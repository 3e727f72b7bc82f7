import { join } from "node:path";
import type { LogWriter } from "./logs.ts";

/** How long close() waits for the readers to see the end of output. */
const CLOSE_GRACE_MS = 1000;

/**
 * A replica's stdout and stderr as two named pipes that outlive its restarts. Each start only
 * redirects into them (`wrap`), so a restart costs the agent no new pipe objects: Deno keeps the
 * native memory of a spawned child's pipes until much later, which made the agent's resident
 * memory climb through crash loops. The agent holds a read-write "keeper" on each FIFO, so its
 * reader never sees end-of-file between starts; `close()` drops the keepers.
 */
export class OutputFifos {
  #keepers: Deno.FsFile[];
  #pumps: Promise<void>[];

  private constructor(
    readonly out: string,
    readonly err: string,
    keepers: Deno.FsFile[],
    readers: Array<[Deno.FsFile, "out" | "err"]>,
    log: LogWriter,
  ) {
    this.#keepers = keepers;
    this.#pumps = readers.map(([file, source]) => pump(file, (b) => log.feed(b, source)));
  }

  /**
   * Makes the FIFOs under `dir` (mode 0600) and starts reading them into `log`. Undefined where
   * there is no `mkfifo`: callers then capture through per-start pipes.
   */
  static async create(dir: string, name: string, log: LogWriter): Promise<OutputFifos | undefined> {
    if (Deno.build.os === "windows") return undefined;
    await Deno.mkdir(dir, { recursive: true });
    const base = join(dir, `${name}.${crypto.randomUUID().slice(0, 8)}`);
    const out = `${base}.out`;
    const err = `${base}.err`;
    try {
      const made = await new Deno.Command("mkfifo", {
        args: ["-m", "600", out, err],
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).output();
      if (!made.success) return undefined;
    } catch {
      return undefined; // no mkfifo on this host
    }
    const keepers: Deno.FsFile[] = [];
    const readers: Array<[Deno.FsFile, "out" | "err"]> = [];
    for (const [path, source] of [[out, "out"], [err, "err"]] as const) {
      keepers.push(await Deno.open(path, { read: true, write: true })); // never blocks
      readers.push([await Deno.open(path, { read: true }), source]); // a writer exists: no block
    }
    return new OutputFifos(out, err, keepers, readers, log);
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

  /**
   * Stops reading once every writer is gone (waits a moment for the last output), then removes
   * the FIFOs. A descendant still holding one keeps its reader busy until it dies.
   */
  async close(): Promise<void> {
    for (const k of this.#keepers.splice(0)) {
      try {
        k.close();
      } catch { /* closed */ }
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.all(this.#pumps),
      new Promise<void>((r) => timer = setTimeout(r, CLOSE_GRACE_MS)),
    ]);
    clearTimeout(timer);
    for (const path of [this.out, this.err]) await Deno.remove(path).catch(() => {});
  }
}

async function pump(file: Deno.FsFile, sink: (b: Uint8Array) => void): Promise<void> {
  const buf = new Uint8Array(64 * 1024);
  try {
    while (true) {
      const n = await file.read(buf);
      if (n === null) break;
      sink(buf.subarray(0, n));
    }
  } catch {
    // closed
  } finally {
    try {
      file.close();
    } catch { /* closed */ }
  }
}
