import assert from "node:assert/strict";
import { join } from "node:path";
import { OutputCollector } from "../../runtime/output_collector.ts";
import { waitFor, within } from "../_helpers.ts";

const decoder = new TextDecoder();

function threads(): number {
  return [...Deno.readDirSync("/proc/self/task")].length;
}

/** A collector over `n` fresh FIFOs in a temp folder, each collected into its own string. */
async function withFifos(
  n: number,
  fn: (c: OutputCollector, fifos: string[], text: string[]) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "prisn-collector-" });
  const collector = OutputCollector.create();
  assert.ok(collector, "epoll through FFI is available on this host");
  const fds: number[] = [];
  try {
    const fifos: string[] = [];
    const text: string[] = [];
    for (let i = 0; i < n; i++) {
      const path = join(dir, `f${i}`);
      assert.ok(collector.mkfifo(path), `mkfifo ${path}`);
      fifos.push(path);
      text.push("");
      fds.push(collector.add(path, (b) => text[i] += decoder.decode(b)));
    }
    await fn(collector, fifos, text);
  } finally {
    await collector.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("OutputCollector reads 300 FIFOs with a constant number of threads, and file I/O stays free", async () => {
  const before = threads();
  await withFifos(300, async (collector, fifos, text) => {
    assert.equal(collector.size, 300);
    // With a blocking read per FIFO, 32 of these took every thread of Deno's blocking pool and
    // this readTextFile never returned.
    await within(Deno.readTextFile("/proc/self/status"), 5_000, "a file read beside 300 FIFOs");
    const waiting = threads(); // a blocking read per FIFO would hold a thread each by now
    assert.ok(waiting - before <= 4, `threads grew from ${before} to ${waiting} with 300 FIFOs`);
    const writers = fifos.map((path, i) =>
      new Deno.Command("/bin/sh", { args: ["-c", `echo "line from ${i}" > "$1"`, "sh", path] })
        .output()
    );
    await Promise.all(writers);
    await waitFor(() => text.every((t, i) => t === `line from ${i}\n`), {
      what: "every FIFO's line",
    });
    // Spawning the 300 writers at once may grow Deno's blocking pool a little (CI saw +5 under
    // load); reading their lines takes no thread of its own.
    const during = threads();
    assert.ok(during - before <= 12, `threads grew from ${before} to ${during} with 300 writers`);
  });
});

Deno.test("OutputCollector keeps a FIFO open across successive writers (a replica's restarts)", async () => {
  await withFifos(1, async (collector, [fifo], text) => {
    for (const n of [1, 2, 3]) { // successive writers, as a replica's restarts are
      await new Deno.Command("/bin/sh", { args: ["-c", `echo start ${n} > "$1"`, "sh", fifo] })
        .output();
    }
    await waitFor(() => text[0] === "start 1\nstart 2\nstart 3\n", { what: "three starts" });
    assert.equal(collector.size, 1);
  });
});

Deno.test("OutputCollector.remove() reads the rest of a FIFO before it closes it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "prisn-collector-" });
  const collector = OutputCollector.create()!;
  try {
    const path = join(dir, "f");
    assert.ok(collector.mkfifo(path));
    let text = "";
    const fd = collector.add(path, (b) => text += decoder.decode(b));
    // Opened for writing without blocking: the collector holds the FIFO read-write.
    const w = await Deno.open(path, { write: true });
    await w.write(new TextEncoder().encode("last words\n"));
    w.close();
    collector.remove(fd); // synchronously, before the event loop had a chance to read it
    assert.equal(text, "last words\n");
    assert.equal(collector.size, 0);
  } finally {
    await collector.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("OutputCollector serves a quiet FIFO promptly while another is flooded", async () => {
  await withFifos(2, async (_c, [flood, quiet], text) => {
    const flooder = new Deno.Command("/bin/sh", {
      args: ["-c", 'exec yes aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa > "$1"', "sh", flood],
    }).spawn();
    try {
      await waitFor(() => text[0].length > 1_000_000, { what: "the flood" });
      text[0] = ""; // the sink keeps nothing: memory stays flat
      const sent = Date.now();
      await new Deno.Command("/bin/sh", { args: ["-c", 'echo ping > "$1"', "sh", quiet] }).output();
      await waitFor(() => text[1] === "ping\n", {
        what: "the quiet FIFO's line",
        timeoutMs: 2_000,
      });
      const took = Date.now() - sent;
      assert.ok(took < 1_000, `the quiet line took ${took} ms behind the flood`);
    } finally {
      flooder.kill("SIGKILL");
      await flooder.status;
    }
  });
});
