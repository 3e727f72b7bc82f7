/**
 * Error messages: zod issues turned into one line each, with a suggestion for a misspelt key.
 *
 * @module
 */

import type { z } from "zod";
import { TABLES, TOP } from "./_schema.ts";
import { PRISN_TOML_KEYS } from "./keys.ts";

export type Path = readonly PropertyKey[];

interface Leaf {
  path: Path;
  issue: z.core.$ZodIssue;
  /** Set for an unknown key: the table it sits in is `path` minus its last segment. */
  unknownKey?: string;
}

/**
 * Flattens zod issues into one leaf per problem: one per unknown key, and for a union (health)
 * the issues of the branch whose type matched, so `{ path = "/x", intervl = "1s" }` reports the
 * misspelt key rather than "must be a path or a table".
 */
export function leafIssues(issue: z.core.$ZodIssue, prefix: Path): Leaf[] {
  const path = [...prefix, ...issue.path];
  if (issue.code === "unrecognized_keys") {
    return issue.keys.map((key) => ({ path: [...path, key], issue, unknownKey: key }));
  }
  if (issue.code === "invalid_union") {
    const matching = issue.errors.filter((branch) =>
      !branch.some((i) => i.code === "invalid_type" && i.path.length === 0)
    );
    if (matching.length === 1) {
      return matching[0].flatMap((inner) => leafIssues(inner, path));
    }
  }
  return [{ path, issue }];
}

export function describe(leaf: Leaf, raw: unknown): string {
  const key = displayKey(leaf.path);
  if (leaf.unknownKey !== undefined) {
    return unknownKeyMessage(leaf.path.slice(0, -1), leaf.unknownKey);
  }
  const { issue } = leaf;
  if (issue.code === "custom" && issue.params?.full) return issue.message;
  const value = valueAt(raw, leaf.path);
  if (value === undefined) return `${key} is required`;
  return `${key} ${issue.message} (got ${render(value)})`;
}

function displayKey(path: Path): string {
  return shorten(
    path.map((p, i) => typeof p === "number" ? `[${p}]` : `${i ? "." : ""}${escaped(String(p))}`)
      .join(""),
  );
}

/** A key as a message shows it: quoted, escaped (one line, no control characters), cut at 60. */
function quoted(key: string): string {
  return shorten(JSON.stringify(key), '..."');
}

function escaped(text: string): string {
  return JSON.stringify(text).slice(1, -1);
}

function shorten(text: string, end = "..."): string {
  return text.length > 60 ? `${text.slice(0, 60 - end.length)}${end}` : text;
}

function valueAt(raw: unknown, path: Path): unknown {
  let value = raw;
  for (const p of path) {
    if (value === null || typeof value !== "object") return undefined;
    value = (value as Record<PropertyKey, unknown>)[p];
  }
  return value;
}

function render(value: unknown): string {
  let text: string;
  if (value instanceof Date) text = value.toISOString();
  else if (typeof value === "number") {
    text = Number.isNaN(value) ? "nan" : Number.isFinite(value) ? String(value) : "inf";
  } else if (Array.isArray(value)) text = JSON.stringify(value);
  else if (typeof value === "object" && value !== null) text = "a table";
  else text = JSON.stringify(value);
  return shorten(text);
}

function unknownKeyMessage(table: Path, leaf: string): string {
  const tableName = table.map(String).join(".");
  const known = table.length === 0
    ? Object.keys(TOP.shape)
    : Object.keys(TABLES[tableName]?.shape ?? {});
  const prefix = tableName ? `${tableName}.` : "";
  const key = prefix + leaf;
  let suggestion = closest(leaf, known);
  if (suggestion !== undefined) suggestion = prefix + suggestion;
  else if (table.length === 0) {
    // A table's key written at the top level, e.g. `memory = "512Mi"`.
    suggestion = PRISN_TOML_KEYS.find((k) => k.endsWith(`.${leaf}`));
  }
  if (suggestion !== undefined) return `unknown key ${quoted(key)}: did you mean "${suggestion}"?`;
  return `unknown key ${quoted(key)}: ${shorten(tableName) || "prisn.toml"} takes ${
    known.join(", ")
  }`;
}

/** The known key nearest to `word`, if it is near enough to be a likely typo. */
function closest(word: string, known: readonly string[]): string | undefined {
  const squash = (s: string) => s.toLowerCase().replace(/[-_]/g, "");
  const limit = word.length <= 4 ? 1 : 2;
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const d = squash(candidate) === squash(word) ? 0 : editDistance(word, candidate);
    if (d <= limit && d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  return best;
}

/** Edit distance counting insertions, deletions, substitutions and swaps of neighbours as 1. */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.length][b.length];
}
