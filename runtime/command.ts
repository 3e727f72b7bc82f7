/**
 * Running a helper program to its end (git, python -m venv, pip, npm): in a process group of its
 * own, with exactly the environment given, its output read line by line, and the whole group
 * killed when it runs out of time.
 *
 * @module
 */

import { killGroup } from "./process.ts";

/** Options for {@link runCommand}. */
export interface RunCommandOptions {
  /**
   * The folder to run in.
   * @default the agent's working folder
   */
  cwd?: string;
  /** The program's whole environment (nothing is inherited from the agent). */
  env: Record<string, string>;
  /** Time allowed; then SIGKILL to the program's whole process group. */
  timeoutMs: number;
  /**
   * Called with each line of output as it arrives (stdout and stderr interleaved, `\n`, `\r\n`
   * and `\r` all end a line), without its line ending.
   */
  onLine?: (line: string, stream: "out" | "err") => void;
}

/** How a program run by {@link runCommand} ended. */
export interface CommandResult {
  /** The exit code (with a signal, as Deno reports it). */
  code: number;
  /** True when the program was killed for running out of time. */
  timedOut: boolean;
}

/**
 * Runs `command` with `args` to its end and returns its exit code. It runs detached (a process
 * group of its own, stdin from /dev/null), so that on the timeout the whole group is killed:
 * what it started (git's remote helpers, npm's install scripts) would otherwise outlive it, keep
 * its output pipes open and hang the caller.
 *
 * @throws {Deno.errors.NotFound} when the program (or `cwd`) is not there; the caller words it.
 */
export async function runCommand(
  command: string,
  args: string[],
  options: RunCommandOptions,
): Promise<CommandResult> {
  const child = new Deno.Command(command, {
    args,
    cwd: options.cwd,
    env: options.env,
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    detached: true,
  }).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup(child.pid, "SIGKILL");
  }, options.timeoutMs);
  try {
    const onLine = options.onLine ?? (() => {});
    const [status] = await Promise.all([
      child.status,
      readLines(child.stdout, (line) => onLine(line, "out")),
      readLines(child.stderr, (line) => onLine(line, "err")),
    ]);
    return { code: status.code, timedOut };
  } finally {
    clearTimeout(timer);
  }
}

async function readLines(stream: ReadableStream<Uint8Array>, onLine: (line: string) => void) {
  let pending = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    pending += chunk;
    const lines = pending.split(/\r?\n|\r/);
    pending = lines.pop() ?? "";
    for (const line of lines) onLine(line);
  }
  if (pending) onLine(pending);
}
