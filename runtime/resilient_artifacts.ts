import type { Artifacts } from "../core/artifacts.ts";
import type { Package } from "../core/version.ts";
import { type DiskHealth, isDiskFull } from "./disk_health.ts";
import { RETRY_MS } from "./resilient_history.ts";

/**
 * The artifacts as the agent uses them, with `current` and metadata.json kept going on a full
 * disk. Those two are bookkeeping for people (the records say which version is active): once the
 * records name a version, failing the deploy because its `current` link could not be written
 * would leave the records and the deploy's answer at odds. So a `setCurrent` that fails for want
 * of space is counted in {@link DiskHealth} (site "files"), held (the last one per deployment)
 * and written again every {@link RETRY_MS} ms until it fits; it never leaves a half file (see
 * core/store.ts). Everything else, and every other error, passes through.
 */
export class ResilientArtifacts implements Artifacts {
  readonly #inner: Artifacts;
  readonly #disk: DiskHealth;
  #held = new Map<string, { version: string; metadata: unknown }>();
  #timer?: ReturnType<typeof setInterval>;

  constructor(inner: Artifacts, disk: DiskHealth) {
    this.#inner = inner;
    this.#disk = disk;
    disk.register("files", this);
  }

  get held(): number {
    return this.#held.size;
  }

  put(
    deployment: string,
    version: string,
    pkg: Package,
    options?: { signal?: AbortSignal },
  ): Promise<boolean> {
    return this.#inner.put(deployment, version, pkg, options);
  }
  ensureLocal(deployment: string, version: string): Promise<string> {
    return this.#inner.ensureLocal(deployment, version);
  }
  archive(deployment: string, version: string): Promise<Uint8Array> {
    return this.#inner.archive(deployment, version);
  }

  async remove(deployment: string, version?: string): Promise<void> {
    if (version === undefined || this.#held.get(deployment)?.version === version) {
      this.#held.delete(deployment); // nothing left to point at
    }
    await this.#inner.remove(deployment, version);
  }

  async setCurrent(deployment: string, version: string, metadata: unknown): Promise<void> {
    this.#held.delete(deployment); // a newer one replaces what was held
    try {
      await this.#inner.setCurrent(deployment, version, metadata);
      this.#disk.worked("files");
    } catch (e) {
      if (!isDiskFull(e)) throw e;
      this.#disk.failed("files", e);
      this.#held.set(deployment, { version, metadata });
      this.#timer ??= setInterval(() => this.flush(), RETRY_MS);
      Deno.unrefTimer(this.#timer);
    }
  }

  /** Writes what is held, in turn; true when nothing is left. */
  async flush(): Promise<boolean> {
    for (const [deployment, { version, metadata }] of [...this.#held]) {
      try {
        await this.#inner.setCurrent(deployment, version, metadata);
      } catch (e) {
        if (!isDiskFull(e)) {
          this.#held.delete(deployment); // gone meanwhile (deleted): nothing to write
          continue;
        }
        this.#disk.failed("files", e, 0);
        return false;
      }
      if (this.#held.get(deployment)?.version === version) this.#held.delete(deployment);
    }
    this.#disk.worked("files");
    this.close();
    return true;
  }

  /** Stops retrying (the agent stops); what is still held is written by the next activation. */
  close(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
