import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { parsePrisnToml, PRISN_TOML_DEFAULTS, PRISN_TOML_KEYS } from "../core/prisn_toml.ts";

const DOC = await Deno.readTextFile(
  fileURLToPath(new URL("../docs/prisn-toml.md", import.meta.url)),
);

/** The text under the heading that names `key` in backticks, up to the next heading. */
function section(key: string): string | undefined {
  const lines = DOC.split("\n");
  const start = lines.findIndex((line) => /^#{2,4} /.test(line) && line.includes(`\`${key}\``));
  if (start < 0) return undefined;
  const end = lines.findIndex((line, i) => i > start && /^#{1,4} /.test(line));
  return lines.slice(start + 1, end < 0 ? undefined : end).join("\n");
}

Deno.test("docs/prisn-toml.md documents every prisn.toml key under its own heading", () => {
  const missing = PRISN_TOML_KEYS.filter((key) => section(key) === undefined);
  assert.deepEqual(missing, [], `keys without a heading in docs/prisn-toml.md: ${missing}`);
});

Deno.test("docs/prisn-toml.md lists every top-level key in its table", () => {
  const rows = DOC.split("\n").filter((line) => line.startsWith("| `"));
  const listed = rows.map((row) => /^\| `([a-z_]+)`/.exec(row)?.[1]);
  assert.deepEqual(listed, PRISN_TOML_KEYS.filter((key) => !key.includes(".")));
});

Deno.test("docs/prisn-toml.md states the defaults prisn applies", () => {
  const flat: Array<[string, unknown]> = Object.entries(PRISN_TOML_DEFAULTS).flatMap((
    [key, value],
  ) =>
    typeof value === "object"
      ? Object.entries(value).map(([sub, v]): [string, unknown] => [`${key}.${sub}`, v])
      : [[key, value]]
  );
  for (const [key, value] of flat) {
    assert.ok(
      section(key)?.includes(`**Default:** \`${value}\``),
      `the section of \`${key}\` should say **Default:** \`${value}\``,
    );
  }
});

Deno.test("docs/prisn-toml.md examples are valid prisn.toml files", () => {
  const blocks = [...DOC.matchAll(/```toml\n([\s\S]*?)```/g)].map((m) => m[1]);
  assert.ok(blocks.length >= 10, `only ${blocks.length} toml examples`);
  for (const block of blocks) parsePrisnToml(block, "docs/prisn-toml.md example");
});

Deno.test("docs/prisn-toml.md opens with full examples that use every top-level key", () => {
  const [service, cronjob] = [...DOC.matchAll(/```toml\n([\s\S]*?)```/g)].map((m) => m[1]);
  const used = new Set([
    ...Object.keys(parsePrisnToml(service)),
    ...Object.keys(parsePrisnToml(cronjob)),
  ]);
  const unused = PRISN_TOML_KEYS.filter((key) => !key.includes(".") && !used.has(key));
  assert.deepEqual(unused, []);
});
