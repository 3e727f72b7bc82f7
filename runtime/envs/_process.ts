/**
 * Running an installer (venv, pip, npm) and turning what it printed into an error message.
 *
 * @module
 */

import { PrisnError } from "../../core/errors.ts";
import { runCommand } from "../command.ts";

const TAIL_LINES = 20;

/** How an installer run ended. */
export interface RunResult {
  code: number;
  timedOut: boolean;
  /** The last lines of stdout and stderr, interleaved as they arrived. */
  tail: string[];
}

/** Options of {@link run}. */
export interface RunOptions {
  cwd: string;
  /** The installer's whole environment. */
  env: Record<string, string>;
  timeoutMs: number;
  onOutput?: (line: string) => void;
  /** What is missing when `command` is not found, e.g. "pip". */
  what: string;
}

/**
 * Runs an installer with exactly `env`, streaming its lines to onOutput and keeping the tail.
 * @throws {PrisnError} UNAVAILABLE when `command` is not installed.
 */
export async function run(
  command: string,
  args: string[],
  options: RunOptions,
): Promise<RunResult> {
  options.onOutput?.(`prisn: running ${[command, ...args].join(" ")}`);
  const kept: string[] = [];
  try {
    const result = await runCommand(command, args, {
      cwd: options.cwd,
      env: options.env,
      timeoutMs: options.timeoutMs,
      onLine: (line) => {
        kept.push(line);
        if (kept.length > 200) kept.shift();
        options.onOutput?.(line);
      },
    });
    return { ...result, tail: kept };
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new PrisnError("UNAVAILABLE", `${options.what} is not installed: ${command} not found`);
    }
    throw error;
  }
}

/** The last line matching `prefer` (without its prefix), else the last non-blank line. */
export function lastLine(lines: string[], prefer: RegExp): string {
  for (let i = lines.length - 1; i >= 0; i--) {
    if (prefer.test(lines[i])) return clip(lines[i].replace(prefer, "").trim());
  }
  for (let i = lines.length - 1; i >= 0; i--) {
    if (lines[i].trim()) return clip(lines[i].trim());
  }
  return "no output";
}

/** The last non-blank lines, joined: the detail of an InstallError. */
export function tail(lines: string[]): string {
  return lines.filter((l) => l.trim() !== "").slice(-TAIL_LINES).join("\n");
}

/** `text` cut to 300 characters. */
export function clip(text: string): string {
  return text.length > 300 ? text.slice(0, 297) + "..." : text;
}
