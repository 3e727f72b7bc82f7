/**
 * Resource quantities written the way Kubernetes writes them: CPU in cores or millicores
 * ("0.5", "500m"), memory in bytes with binary (Ki, Mi, Gi, Ti, Pi, Ei) or decimal
 * (k/K, M, G, T, P, E) suffixes.
 *
 * @module
 */

import { invalid } from "./errors.ts";

const CPU_RE = /^(\d+|\d*\.\d+)(m?)$/;
const MEMORY_RE = /^(\d+|\d*\.\d+)(?:[eE](\d{1,2}))?(Ki|Mi|Gi|Ti|Pi|Ei|k|K|M|G|T|P|E)?$/;

const BINARY = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
const DECIMAL = ["k", "M", "G", "T", "P", "E"];

const MEMORY_UNITS: Readonly<Record<string, bigint>> = {
  "": 1n,
  Ki: 1n << 10n,
  Mi: 1n << 20n,
  Gi: 1n << 30n,
  Ti: 1n << 40n,
  Pi: 1n << 50n,
  Ei: 1n << 60n,
  k: 10n ** 3n,
  K: 10n ** 3n,
  M: 10n ** 6n,
  G: 10n ** 9n,
  T: 10n ** 12n,
  P: 10n ** 15n,
  E: 10n ** 18n,
};

/** Suffixes people write by habit, mapped to the binary unit they almost always mean. */
const LIKELY_MEANT: Readonly<Record<string, string>> = {
  kb: "Ki",
  kib: "Ki",
  ki: "Ki",
  m: "Mi",
  mb: "Mi",
  mib: "Mi",
  mi: "Mi",
  g: "Gi",
  gb: "Gi",
  gib: "Gi",
  gi: "Gi",
  t: "Ti",
  tb: "Ti",
  tib: "Ti",
  ti: "Ti",
};

/**
 * Parses a CPU quantity into whole millicores: "500m" → 500, "0.5" → 500, "1" → 1000,
 * "2.25" → 2250. Throws a one-line INVALID error for anything else, for zero, and for values
 * finer than one millicore ("0.0005", "1.5m").
 *
 * @param what the name shown in errors, e.g. "resources.cpu"
 */
export function parseCpu(text: string, what = "cpu"): number {
  const trimmed = text.trim();
  const m = CPU_RE.exec(trimmed);
  if (!m) {
    throw invalid(
      `${what} "${text}" is not a CPU quantity: use millicores like 250m or cores like 0.5, 1, 2`,
    );
  }
  const [whole, fraction = ""] = m[1].split(".");
  let millis: number;
  if (m[2] === "m") {
    if (/[1-9]/.test(fraction)) {
      throw invalid(`${what} "${text}" is finer than 1m: use whole millicores like 250m`);
    }
    millis = Number(whole || "0");
  } else {
    if (/[1-9]/.test(fraction.slice(3))) {
      throw invalid(`${what} "${text}" is finer than 1m: use at most 3 decimals, like 0.125`);
    }
    millis = Number(whole || "0") * 1000 + Number(fraction.slice(0, 3).padEnd(3, "0"));
  }
  if (millis === 0) throw invalid(`${what} "${text}" must be more than zero, e.g. 100m`);
  if (!Number.isSafeInteger(millis)) throw invalid(`${what} "${text}" is too large`);
  return millis;
}

/**
 * Parses a memory quantity into bytes: "512Mi" → 536870912, "1G" → 1000000000, "1.5Ki" → 1536,
 * "1e3" → 1000, "4096" → 4096. Throws a one-line INVALID error for anything else, for zero and
 * for fractions of a byte; "512m" or "512MB" get a "did you mean "512Mi"?" hint.
 *
 * @param what the name shown in errors, e.g. "resources.memory"
 */
export function parseMemory(text: string, what = "memory"): number {
  const trimmed = text.trim();
  const m = MEMORY_RE.exec(trimmed);
  if (!m) {
    const habit = /^(\d+|\d*\.\d+)\s*([a-zA-Z]+)$/.exec(trimmed);
    const meant = habit && LIKELY_MEANT[habit[2].toLowerCase()];
    if (meant) {
      throw invalid(
        `${what} "${text}" is not a memory quantity: did you mean "${habit[1]}${meant}"?`,
      );
    }
    throw invalid(
      `${what} "${text}" is not a memory quantity: use bytes or a suffix, like 512Mi, 2Gi or 500M`,
    );
  }
  const [whole, fraction = ""] = m[1].split(".");
  const mantissa = BigInt((whole + fraction) || "0");
  const numerator = mantissa * 10n ** BigInt(m[2] ?? "0") * MEMORY_UNITS[m[3] ?? ""];
  const denominator = 10n ** BigInt(fraction.length);
  if (numerator % denominator !== 0n) {
    throw invalid(`${what} "${text}" is not a whole number of bytes`);
  }
  const bytes = numerator / denominator;
  if (bytes === 0n) throw invalid(`${what} "${text}" must be more than zero, e.g. 64Mi`);
  if (bytes > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid(`${what} "${text}" is too large`);
  return Number(bytes);
}

/**
 * Formats bytes the way {@link parseMemory} reads them: "512Mi", "1Gi", "500M", "1000".
 * Exact when the value is a whole number of some unit (binary units preferred); otherwise it is
 * for display and rounds to one decimal of the largest binary unit, e.g. "117.7Mi".
 */
export function formatMemory(
  bytes: number,
  options: {
    /** Binary units only, as `prisn get` shows limits: 100000000 → "95.4Mi", not "100M". */
    binaryOnly?: boolean;
  } = {},
): string {
  const n = Math.round(bytes);
  if (!Number.isFinite(n) || n < 0) return "-";
  if (n === 0) return "0";
  for (let i = BINARY.length; i >= 1; i--) {
    const unit = 1024 ** i;
    if (n % unit === 0) return `${n / unit}${BINARY[i - 1]}`;
  }
  for (let i = DECIMAL.length; i >= 1 && !options.binaryOnly; i--) {
    const unit = 1000 ** i;
    if (n % unit === 0) return `${n / unit}${DECIMAL[i - 1]}`;
  }
  if (n < 1024) return String(n);
  let i = Math.min(Math.floor(Math.log2(n) / 10), BINARY.length);
  if (i < BINARY.length && Number((n / 1024 ** i).toFixed(1)) >= 1024) i++;
  return `${(n / 1024 ** i).toFixed(1)}${BINARY[i - 1]}`;
}

/** A size for people: "512 B", "1.5 KiB", "46.0 MiB". */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** Formats millicores the way {@link parseCpu} reads them: 500 → "500m", 2000 → "2". */
export function formatCpu(millicores: number): string {
  const m = Math.round(millicores);
  if (!Number.isFinite(m) || m < 0) return "-";
  return m % 1000 === 0 ? String(m / 1000) : `${m}m`;
}
