import assert from "node:assert/strict";
import { escapeControls } from "../../core/terminal.ts";

Deno.test("escapeControls() shows OSC, CSI, \\r, BEL, NUL, DEL and C1 controls as escapes", () => {
  assert.equal(
    escapeControls("\x1b]0;owned\x07\x1b[2J\rok\0\x7f\x9b31m"),
    "\\x1b]0;owned\\x07\\x1b[2J\\rok\\x00\\x7f\\x9b31m",
  );
});

Deno.test("escapeControls() shows bidi overrides and line separators, keeps tabs and other text", () => {
  assert.equal(escapeControls("a\u202eb\u2066c\u2028d"), "a\\u202eb\\u2066c\\u2028d");
  assert.equal(escapeControls("tab\there, é ü 日本 🙂 [prisn]"), "tab\there, é ü 日本 🙂 [prisn]");
});

// deno-lint-ignore no-control-regex
const CONTROL = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u2028-\u202e]/;

Deno.test("escapeControls() leaves no control character in any string", () => {
  let seed = 11;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let i = 0; i < 2000; i++) {
    const text = Array.from({ length: 40 }, () => String.fromCharCode(random() * 0x2100)).join("");
    assert.doesNotMatch(escapeControls(text), CONTROL);
  }
});
