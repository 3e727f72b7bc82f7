import config from "./deno.json" with { type: "json" };
import { BUILD_COMMIT } from "./_build_info.ts";

export const VERSION: string = config.version;

/**
 * "prisn 0.1.0 (abc1234)": the commit is baked in by the release build (tools/compile.ts writes
 * _build_info.ts); from a source checkout it is read from git, only when asked.
 */
export function versionText(): string {
  return `prisn ${VERSION} (${BUILD_COMMIT === "source" ? sourceCommit() : BUILD_COMMIT})`;
}

function sourceCommit(): string {
  try {
    const out = new Deno.Command("git", {
      args: ["rev-parse", "--short", "HEAD"],
      cwd: new URL(".", import.meta.url).pathname,
      stdout: "piped",
      stderr: "null",
    }).outputSync();
    const commit = new TextDecoder().decode(out.stdout).trim();
    return out.success && commit ? `source ${commit}` : "source";
  } catch {
    return "source";
  }
}
