/**
 * Finding the line of a key. smol-toml keeps no positions, so the text is scanned: table
 * headers set the current table, and `key =` / `a.b =` lines are recorded with their full path.
 *
 * @module
 */

import type { Path } from "./_messages.ts";

export interface KeyLine {
  line: number;
  path: string[];
}

const KEY_PART = String.raw`(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')`;
const DOTTED_KEY = String.raw`${KEY_PART}(?:\s*\.\s*${KEY_PART})*`;
const HEADER_RE = new RegExp(String.raw`^\s*\[\[?\s*(${DOTTED_KEY})\s*\]\]?`);
const ASSIGN_RE = new RegExp(String.raw`^\s*(${DOTTED_KEY})\s*=`);

function splitKey(dotted: string): string[] {
  return [...dotted.matchAll(new RegExp(KEY_PART, "g"))].map(([part]) => {
    if (part.startsWith("'")) return part.slice(1, -1);
    if (part.startsWith('"')) {
      try {
        return JSON.parse(part);
      } catch {
        return part.slice(1, -1);
      }
    }
    return part;
  });
}

export function keyLines(text: string): KeyLine[] {
  const found: KeyLine[] = [];
  let table: string[] = [];
  let openString: string | undefined; // the delimiter of a multi-line string being skipped
  let inline: { path: string[]; depth: number } | undefined; // a multi-line inline table
  text.split(/\r?\n/).forEach((content, index) => {
    const line = index + 1;
    if (openString !== undefined) {
      if (content.split(openString).length % 2 === 0) openString = undefined;
      return;
    }
    const header = inline ? undefined : HEADER_RE.exec(content);
    const assign = header ? undefined : ASSIGN_RE.exec(content);
    let path: string[] | undefined;
    if (header) {
      table = splitKey(header[1]);
      found.push({ line, path: table });
    } else if (assign) {
      path = [...(inline?.path ?? table), ...splitKey(assign[1])];
      found.push({ line, path });
    }
    const balance = braceBalance(content);
    if (inline) {
      inline.depth += balance;
      if (inline.depth <= 0) inline = undefined;
    } else if (path && balance > 0) {
      inline = { path, depth: balance };
    }
    for (const delimiter of ['"""', "'''"]) {
      if (content.split(delimiter).length % 2 === 0) openString = delimiter;
    }
  });
  return found;
}

/** Opened minus closed braces on a line, outside strings and comments. */
function braceBalance(content: string): number {
  let balance = 0;
  let quote: string | undefined;
  for (let i = 0; i < content.length; i++) {
    const c = content[i];
    if (quote) {
      if (c === "\\" && quote === '"') i++;
      else if (c === quote) quote = undefined;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === "#") break;
    else if (c === "{") balance++;
    else if (c === "}") balance--;
  }
  return balance;
}

/**
 * The line that best shows where `path` is: the line defining exactly that key; else the line
 * of its nearest enclosing key (an inline table, a list, a table header); else the first line
 * defining something inside it.
 */
export function lineOf(lines: KeyLine[], path: Path): number | undefined {
  const target = path.filter((p) => typeof p === "string");
  let enclosing: KeyLine | undefined;
  let inside: KeyLine | undefined;
  for (const entry of lines) {
    const common = entry.path.length;
    if (common === target.length && entry.path.every((p, i) => p === target[i])) return entry.line;
    if (common < target.length && entry.path.every((p, i) => p === target[i])) {
      if (!enclosing || common > enclosing.path.length) enclosing = entry;
    } else if (!inside && common > target.length && target.every((p, i) => p === entry.path[i])) {
      inside = entry;
    }
  }
  return (enclosing ?? inside)?.line;
}
