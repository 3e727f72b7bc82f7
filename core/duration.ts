import { invalid } from "./errors.ts";

const UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/** Parses "500ms", "10s", "30m", "1h30m", "2d" into milliseconds. */
export function parseDuration(text: string, what = "duration"): number {
  const trimmed = text.trim();
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let matched = 0;
  for (const m of trimmed.matchAll(re)) {
    total += Number(m[1]) * UNITS[m[2]];
    matched += m[0].length;
  }
  if (trimmed.length === 0 || matched !== trimmed.length) {
    throw invalid(`${what} "${text}" is not a duration: use forms like 500ms, 10s, 30m, 1h30m, 2d`);
  }
  return total;
}

/** Short human form: 450ms, 1.2s, 4s, 12s, 5m, 3h, 2d (largest unit, rounded down). */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return "-";
  if (ms < 1000) return `${Math.floor(ms)}ms`;
  if (ms < 10_000) return `${(Math.floor(ms / 100) / 10).toFixed(1).replace(/\.0$/, "")}s`;
  if (ms < 60_000) return `${Math.floor(ms / 1000)}s`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)}m`;
  if (ms < 86_400_000) return `${Math.floor(ms / 3_600_000)}h`;
  return `${Math.floor(ms / 86_400_000)}d`;
}

/** "5m" for a moment 5 minutes before `now`. */
export function formatAge(then: number, now: number = Date.now()): string {
  return formatDuration(Math.max(0, now - then));
}
