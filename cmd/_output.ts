import { stringify as toYaml } from "yaml";
import { invalid } from "../core/errors.ts";

export type Format = "table" | "json" | "yaml";

export function parseFormat(value: string | undefined): Format {
  if (value === undefined || value === "table" || value === "wide") return "table";
  if (value === "json" || value === "yaml") return value;
  throw invalid(`output format "${value}" is not supported: use -o json or -o yaml`);
}

/** JSON or YAML of a value, for -o json|yaml. */
export function formatData(value: unknown, format: "json" | "yaml"): string {
  return format === "json" ? JSON.stringify(value, null, 2) : toYaml(value).trimEnd();
}

/** Left-aligned columns separated by three spaces, kubectl style. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => i === cells.length - 1 ? c : c.padEnd(widths[i])).join("   ").trimEnd();
  return [line(headers), ...rows.map(line)].join("\n");
}

/** "Key:   value" lines, aligned. */
export function fields(pairs: Array<[string, string | undefined]>): string {
  const shown = pairs.filter(([, v]) => v !== undefined) as Array<[string, string]>;
  const width = Math.max(...shown.map(([k]) => k.length)) + 1;
  return shown.map(([k, v]) => `${(k + ":").padEnd(width)}  ${v}`).join("\n");
}

export function clock(at: number | undefined): string {
  if (at === undefined) return "-";
  const d = new Date(at);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
