/**
 * Text from the processes prisn runs, made safe to print on an operator's terminal.
 *
 * @module
 */

/**
 * C0 controls but tab, DEL, C1 controls (0x9b is a CSI on its own to some terminals), the Unicode
 * line and paragraph separators and the bidirectional overrides and isolates (they reorder what
 * is shown, so a line could seem to say something else).
 */
// deno-lint-ignore no-control-regex
const CONTROLS = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/**
 * `text` with every control character shown as an escape (`\x1b`, `\r`, `\u202e`), so app
 * output cannot move the cursor, recolour or retitle the terminal, rewrite what is already on
 * screen (`\r`), or reorder a line: what is printed is what was written, one line per line.
 */
export function escapeControls(text: string): string {
  return text.replace(CONTROLS, (c) => {
    const code = c.charCodeAt(0);
    if (c === "\r") return "\\r";
    if (c === "\n") return "\\n";
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16)}`;
  });
}
