import { invalid } from "./errors.ts";

/** Parses a replica count: a non-negative integer, else a one-line error. */
export function parseReplicas(value: string | number): number {
  const text = String(value).trim();
  if (!/^\d+$/.test(text) || Number(text) > 1000) {
    throw invalid(`replicas "${value}" is not valid: give a whole number from 0 to 1000`);
  }
  return Number(text);
}

/** A positive integer setting (`what` names it in the error), or undefined when not given. */
export function parsePositive(value: string | undefined, what: string): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > 1_000_000) {
    throw invalid(`${what} "${value}" is not valid: give a whole number of at least 1`);
  }
  return Number(text);
}

export function parsePort(value: string | number): number {
  const text = String(value).trim();
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < 1 || n > 65535) {
    throw invalid(`port "${value}" is not valid: give a number from 1 to 65535`);
  }
  return n;
}

/** "K=V" → [K, V]; keys follow the usual environment variable rules. */
export function parseEnvPair(pair: string): [string, string] {
  const eq = pair.indexOf("=");
  const key = eq > 0 ? pair.slice(0, eq) : "";
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) {
    throw invalid(`--env "${pair}" is not valid: use KEY=VALUE with a letter or _ first in KEY`);
  }
  return [key, pair.slice(eq + 1)];
}
