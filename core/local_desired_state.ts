import type { DesiredChange, DesiredState, WriteOptions } from "./desired_state.ts";
import { deploymentNotFound, PrisnError } from "./errors.ts";
import type { Records } from "./records.ts";
import type { DeploymentRecord, VersionRecord, VersionStatus } from "./types.ts";

/**
 * One node's desired state: the SQLite records, written in one transaction per change (the
 * revision check and the write together), with watchers told once it is committed.
 */
export class LocalDesiredState implements DesiredState {
  #listeners = new Set<(change: DesiredChange) => void>();

  constructor(readonly records: Records) {}

  getDeployment(name: string): DeploymentRecord | undefined {
    return this.records.getDeployment(name);
  }
  listDeployments(): DeploymentRecord[] {
    return this.records.listDeployments();
  }
  getVersion(deployment: string, version: string): VersionRecord | undefined {
    return this.records.getVersion(deployment, version);
  }
  listVersions(deployment: string): VersionRecord[] {
    return this.records.listVersions(deployment);
  }

  putVersion(
    v: Omit<VersionRecord, "createdAt" | "deployedAt" | "status">,
    options: WriteOptions = {},
  ): Promise<void> {
    return this.#write(v.deployment, options, (now) => this.records.putVersion(v, now));
  }

  setVersionStatus(deployment: string, version: string, status: VersionStatus): Promise<void> {
    return this.#write(
      deployment,
      {},
      () => this.records.setVersionStatus(deployment, version, status),
    );
  }

  deleteVersion(deployment: string, version: string): Promise<void> {
    return this.#write(deployment, {}, () => this.records.deleteVersion(deployment, version));
  }

  async activate(
    deployment: string,
    version: string,
    replicas: number,
    options: WriteOptions = {},
  ): Promise<number> {
    await this.#write(
      deployment,
      options,
      (now) => this.records.activate(deployment, version, replicas, now),
    );
    return this.#revision(deployment);
  }

  async setReplicas(name: string, replicas: number, options: WriteOptions = {}): Promise<number> {
    await this.#write(name, options, (now) => this.records.setReplicas(name, replicas, now), true);
    return this.#revision(name);
  }

  async setSuspended(
    name: string,
    suspended: boolean,
    options: WriteOptions = {},
  ): Promise<number> {
    await this.#write(
      name,
      options,
      (now) => this.records.setSuspended(name, suspended, now),
      true,
    );
    return this.#revision(name);
  }

  async setLastScheduled(
    name: string,
    at: number | undefined,
    options: WriteOptions = {},
  ): Promise<number> {
    await this.#write(name, options, () => this.records.setLastScheduled(name, at), true);
    return this.#revision(name);
  }

  deleteDeployment(name: string, options: WriteOptions = {}): Promise<void> {
    return this.#write(name, options, () => this.records.deleteDeployment(name));
  }

  watch(listener: (change: DesiredChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Checks the expected revision and writes, in one transaction (it joins the caller's, e.g. the
   * scheduler's pass). Watchers hear of it, and the promise resolves, once the outermost
   * transaction has committed; if it is rolled back (a later write failed, or the commit did, on
   * a full disk), nobody hears of a change that never happened and the promise rejects.
   */
  #write(
    name: string,
    options: WriteOptions,
    write: (now: number) => void,
    mustExist = false,
  ): Promise<void> {
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    try {
      this.records.transaction(() => {
        const current = this.records.getDeployment(name);
        if (mustExist && !current) {
          throw deploymentNotFound(name);
        }
        if (options.expect !== undefined && (current?.revision ?? 0) !== options.expect) {
          throw new PrisnError(
            "CONFLICT",
            `${name} changed meanwhile (revision ${current?.revision ?? "none"}, ` +
              `expected ${options.expect}): look again and retry`,
          );
        }
        write(options.now ?? Date.now());
        const change = { deployment: name, revision: this.records.getDeployment(name)?.revision };
        this.records.afterCommit(() => {
          resolve();
          queueMicrotask(() => this.#tell(change));
        }, reject);
      });
    } catch (e) {
      reject(e);
    }
    return promise;
  }

  #tell(change: DesiredChange): void {
    for (const listener of this.#listeners) {
      try {
        listener(change);
      } catch { /* a watcher's failure is its own */ }
    }
  }

  #revision(name: string): number {
    return this.records.getDeployment(name)?.revision ?? 0;
  }
}
