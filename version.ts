import config from "./deno.json" with { type: "json" };

/** Set by the release build (tools/compile.ts writes _build_info.ts); "dev" from source. */
import { BUILD_COMMIT } from "./_build_info.ts";

export const VERSION: string = config.version;

export function versionText(): string {
  return `prisn ${VERSION} (${BUILD_COMMIT})`;
}
