import { join } from "node:path";
import { type ErrorCode, PrisnError } from "../core/errors.ts";
import type { Paths } from "../core/paths.ts";
import { ensureWritable } from "../core/fs.ts";

/** How to start this same program as a background agent (source checkout or compiled binary). */
export function agentCommand(): { command: string; args: string[] } {
  const exe = Deno.execPath();
  const isDeno = /^deno(\.exe)?$/i.test(exe.split(/[\\/]/).pop() ?? "");
  if (isDeno) {
    const main = new URL("../main.ts", import.meta.url).pathname;
    return { command: exe, args: ["run", "-A", "--quiet", main, "agent", "run", "--background"] };
  }
  return { command: exe, args: ["agent", "run", "--background"] };
}

/**
 * The CLI's side of the agent API: HTTP over the unix socket. `connect()` starts a background
 * agent when none answers; racing CLIs serialize on a lock file so only one agent starts.
 */
export class AgentClient {
  #http: Deno.HttpClient;

  constructor(readonly paths: Paths) {
    this.#http = Deno.createHttpClient({ proxy: { transport: "unix", path: paths.socket } });
  }

  /** A client to a running agent, or undefined when none answers. */
  static async existing(paths: Paths): Promise<AgentClient | undefined> {
    const client = new AgentClient(paths);
    if (await client.ping()) return client;
    client.close();
    return undefined;
  }

  /** A client to the agent, starting one in the background if needed. */
  static async connect(paths: Paths): Promise<AgentClient> {
    const running = await AgentClient.existing(paths);
    if (running) return running;
    await ensureWritable(paths.home);
    await Deno.mkdir(paths.state, { recursive: true });
    using lock = await Deno.open(join(paths.state, "start.lock"), { create: true, write: true });
    await lock.lock(true);
    try {
      const raced = await AgentClient.existing(paths);
      if (raced) return raced;
      await startBackgroundAgent(paths);
      return new AgentClient(paths);
    } finally {
      await lock.unlock();
    }
  }

  close(): void {
    this.#http.close();
  }

  async ping(): Promise<boolean> {
    try {
      const res = await fetch("http://prisn/v1/ping", {
        client: this.#http,
        signal: AbortSignal.timeout(2_000),
      });
      await res.body?.cancel();
      return res.ok;
    } catch {
      return false;
    }
  }

  /** Calls the API; an error answer becomes the PrisnError the agent raised. */
  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.#fetch(method, path, body);
    const data = await res.json();
    if (!res.ok || (data && typeof data === "object" && "error" in data && data.error)) {
      throw new PrisnError(data.error.code as ErrorCode, data.error.message);
    }
    return data as T;
  }

  /** Calls an NDJSON API, handing each line to `onLine` as it arrives. */
  async stream(
    method: string,
    path: string,
    body: unknown,
    onLine: (obj: Record<string, unknown>) => void,
  ): Promise<void> {
    const res = await this.#fetch(method, path, body);
    if (!res.ok) {
      const data = await res.json();
      throw new PrisnError(data.error.code as ErrorCode, data.error.message);
    }
    let buffer = "";
    const decoder = new TextDecoder();
    for await (const chunk of res.body!) {
      buffer += decoder.decode(chunk, { stream: true });
      let nl;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        if (line.trim()) onLine(JSON.parse(line));
      }
    }
  }

  async #fetch(method: string, path: string, body?: unknown): Promise<Response> {
    try {
      return await fetch(`http://prisn${path}`, {
        method,
        client: this.#http,
        headers: body !== undefined ? { "content-type": "application/json" } : undefined,
        body: body !== undefined ? JSON.stringify(body) : undefined,
      });
    } catch (e) {
      throw new PrisnError(
        "UNAVAILABLE",
        `the prisn agent at ${this.paths.socket} did not answer: check prisn agent status`,
        { cause: e },
      );
    }
  }
}

async function startBackgroundAgent(paths: Paths): Promise<void> {
  const { command, args } = agentCommand();
  const child = new Deno.Command(command, {
    args,
    env: { PRISN_HOME: paths.home },
    stdin: "null",
    stdout: "null",
    stderr: "null",
    detached: true,
  }).spawn();
  child.unref();
  let exited = false;
  child.status.then(() => exited = true);
  const deadline = Date.now() + 20_000;
  const probe = new AgentClient(paths);
  try {
    while (Date.now() < deadline) {
      if (await probe.ping()) return;
      if (exited) break;
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    probe.close();
  }
  const log = await Deno.readTextFile(join(paths.state, "agent.log")).catch(() => "");
  const last = log.trim().split("\n").pop() ?? "";
  throw new PrisnError(
    "UNAVAILABLE",
    `the prisn agent did not start${last ? `: ${last}` : ""} (see ${
      join(paths.state, "agent.log")
    })`,
  );
}
