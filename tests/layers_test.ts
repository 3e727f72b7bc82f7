/**
 * The dependency direction of DESIGN.md: `cmd → runtime | cluster → core`. core/ knows nothing of
 * processes or NATS, runtime/ never imports cluster/ (cmd/agent.ts picks the backends), and
 * nothing below cmd/ imports cmd/.
 */
import assert from "node:assert/strict";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** May a file in `from` import from `to`? */
const ALLOWED: Record<string, string[]> = {
  core: ["core"],
  runtime: ["runtime", "core"],
  cluster: ["cluster", "core"],
  cmd: ["cmd", "runtime", "cluster", "core"],
};

function* sources(dir: string): Generator<string> {
  for (const e of Deno.readDirSync(dir)) {
    const path = join(dir, e.name);
    if (e.isDirectory) yield* sources(path);
    else if (e.name.endsWith(".ts")) yield path;
  }
}

Deno.test("imports follow cmd → runtime | cluster → core", () => {
  const wrong: string[] = [];
  for (const layer of Object.keys(ALLOWED)) {
    const dir = join(ROOT, layer);
    try {
      Deno.statSync(dir);
    } catch {
      continue; // cluster/ may hold no code yet
    }
    for (const file of sources(dir)) {
      const text = Deno.readTextFileSync(file);
      for (const m of text.matchAll(/(?:from|import\()\s*["'](\.{1,2}\/[^"']+)["']/g)) {
        const target = relative(ROOT, resolve(dirname(file), m[1]));
        const top = target.split("/")[0];
        if (!(top in ALLOWED)) continue; // a file at the root, e.g. version.ts
        if (!ALLOWED[layer].includes(top)) wrong.push(`${relative(ROOT, file)} imports ${target}`);
      }
    }
  }
  assert.deepEqual(wrong, []);
});
