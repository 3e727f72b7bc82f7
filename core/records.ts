import { DatabaseSync, type SQLInputValue, type StatementSync } from "node:sqlite";
import { PrisnError } from "./errors.ts";
import type { ProcessLedger, RunHistory, RunsFilter, RunUpdate } from "./run_history.ts";
import type { DeploySpec } from "./spec.ts";
import type {
  DeploymentRecord,
  EventRecord,
  ProcessRecord,
  RunRecord,
  RunStatus,
  RunTicket,
  SourceInfo,
  VersionRecord,
  VersionStatus,
} from "./types.ts";

/** Schema migrations, applied in order; PRAGMA user_version holds how many have run. */
const MIGRATIONS: string[] = [
  `CREATE TABLE deployments(
     name TEXT PRIMARY KEY, type TEXT NOT NULL, version TEXT NOT NULL,
     replicas INTEGER NOT NULL, suspended INTEGER NOT NULL DEFAULT 0,
     last_scheduled_at INTEGER, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
   CREATE TABLE versions(
     deployment TEXT NOT NULL, version TEXT NOT NULL, spec TEXT NOT NULL, source TEXT NOT NULL,
     files INTEGER NOT NULL, bytes INTEGER NOT NULL, created_at INTEGER NOT NULL,
     deployed_at INTEGER NOT NULL, status TEXT NOT NULL,
     PRIMARY KEY(deployment, version));
   CREATE TABLE runs(
     id TEXT PRIMARY KEY, deployment TEXT NOT NULL, version TEXT NOT NULL, status TEXT NOT NULL,
     trigger TEXT NOT NULL, node TEXT NOT NULL, attempt INTEGER NOT NULL DEFAULT 1, parent TEXT,
     scheduled_at INTEGER, started_at INTEGER, finished_at INTEGER, exit_code INTEGER,
     reason TEXT, pid INTEGER, created_at INTEGER NOT NULL);
   CREATE INDEX runs_by_deployment ON runs(deployment, created_at);
   CREATE INDEX runs_by_created ON runs(created_at);
   CREATE TABLE events(
     id INTEGER PRIMARY KEY AUTOINCREMENT, deployment TEXT NOT NULL, at INTEGER NOT NULL,
     kind TEXT NOT NULL, message TEXT NOT NULL);
   CREATE INDEX events_by_deployment ON events(deployment, id);
   CREATE TABLE processes(
     id TEXT PRIMARY KEY, deployment TEXT NOT NULL, pid INTEGER NOT NULL,
     start_ticks INTEGER NOT NULL);`,
  // Run tickets: what a pending run needs to start (env overrides, replace), and when.
  `ALTER TABLE runs ADD COLUMN ticket TEXT;
   ALTER TABLE runs ADD COLUMN not_before INTEGER;
   CREATE INDEX runs_by_status ON runs(status);`,
  // Desired state changes by compare-and-set: every write to a deployment bumps its revision.
  `ALTER TABLE deployments ADD COLUMN revision INTEGER NOT NULL DEFAULT 1;`,
  // A cluster node's mirror of the shared desired state: its own bookkeeping (the last bucket
  // revision applied, the cron ticks it holds), by key.
  `CREATE TABLE IF NOT EXISTS mirror_state(key TEXT PRIMARY KEY, value TEXT NOT NULL);`,
  // Runs of service replicas (one per process lifetime), and the last stderr line of every run.
  `ALTER TABLE runs ADD COLUMN replica TEXT;
   ALTER TABLE runs ADD COLUMN last_error TEXT;`,
  // Namespaces: a deployment is known by its key NAMESPACE/NAME (core/namespace.ts); everything
  // recorded before is in "default". A replica's process id is KEY/REPLICA, a run's stays its id.
  `UPDATE deployments SET name = 'default/' || name WHERE instr(name, '/') = 0;
   UPDATE versions SET deployment = 'default/' || deployment,
     spec = json_set(spec, '$.name', 'default/' || json_extract(spec, '$.name'))
     WHERE instr(deployment, '/') = 0;
   UPDATE runs SET deployment = 'default/' || deployment WHERE instr(deployment, '/') = 0;
   UPDATE events SET deployment = 'default/' || deployment WHERE instr(deployment, '/') = 0;
   UPDATE processes SET deployment = 'default/' || deployment,
     id = CASE WHEN instr(id, '/') > 0 THEN 'default/' || id ELSE id END
     WHERE instr(deployment, '/') = 0;`,
];

type Row = Record<string, SQLInputValue>;

/** Events kept per deployment; older ones are pruned as new ones arrive. */
export const EVENTS_KEPT = 500;

/**
 * The record store: deployments, versions, runs, events and live processes, in SQLite (WAL).
 * One writer (the agent); every write is a single statement or one transaction.
 */
export class Records implements RunHistory, ProcessLedger {
  readonly db: DatabaseSync;
  #statements = new Map<string, StatementSync>();

  constructor(path: string) {
    let db: DatabaseSync | undefined;
    try {
      this.db = db = new DatabaseSync(path);
      this.db.exec(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;",
      );
      this.migrate();
    } catch (e) {
      db?.close(); // a failed open must not leak the connection
      throw new PrisnError("UNAVAILABLE", `cannot open ${path}: ${(e as Error).message}`, {
        cause: e,
      });
    }
  }

  close(): void {
    this.#statements.clear();
    this.db.close();
  }

  /** Prepared once per SQL text: a statement holds native memory until it is collected. */
  #prepare(sql: string): StatementSync {
    let statement = this.#statements.get(sql);
    if (!statement) {
      statement = this.db.prepare(sql);
      this.#statements.set(sql, statement);
    }
    return statement;
  }

  private migrate(): void {
    const { user_version: at } = this.#prepare("PRAGMA user_version").get() as {
      user_version: number;
    };
    if (at > MIGRATIONS.length) {
      throw new Error(`database schema ${at} is newer than this prisn (${MIGRATIONS.length})`);
    }
    for (let i = at; i < MIGRATIONS.length; i++) {
      this.transaction(() => {
        this.db.exec(MIGRATIONS[i]);
        this.db.exec(`PRAGMA user_version = ${i + 1}`);
      });
    }
  }

  #depth = 0;
  #settled: { committed: () => void; rolledBack: (e: unknown) => void }[] = [];

  /**
   * Runs `fn` in one transaction; a transaction inside another joins it. When `fn` or the commit
   * fails, what `fn` wrote is rolled back and its error thrown (SQLite may have rolled back
   * already, e.g. on a full disk). What `afterCommit` queued meanwhile runs once the outermost
   * transaction has committed, or hears why it was rolled back.
   */
  transaction<T>(fn: () => T): T {
    if (this.#depth > 0) return fn();
    this.db.exec("BEGIN IMMEDIATE");
    this.#depth++;
    let result: T;
    try {
      result = fn();
      this.db.exec("COMMIT");
    } catch (e) {
      if (this.db.isTransaction) this.db.exec("ROLLBACK");
      for (const s of this.#takeSettled()) s.rolledBack(e);
      throw e;
    } finally {
      this.#depth--;
    }
    for (const s of this.#takeSettled()) s.committed();
    return result;
  }

  /**
   * Calls `committed` once what the current transaction wrote is committed (at once outside a
   * transaction), or `rolledBack` with the reason if it is not; each call is the caller's to guard.
   */
  afterCommit(committed: () => void, rolledBack: (e: unknown) => void = () => {}): void {
    if (this.#depth === 0) committed();
    else this.#settled.push({ committed, rolledBack });
  }

  #takeSettled() {
    const settled = this.#settled;
    this.#settled = [];
    return settled;
  }

  // --- deployments -------------------------------------------------------------------------

  getDeployment(name: string): DeploymentRecord | undefined {
    const row = this.#prepare("SELECT * FROM deployments WHERE name = ?").get(name) as
      | Row
      | undefined;
    return row ? toDeployment(row) : undefined;
  }

  listDeployments(): DeploymentRecord[] {
    return (this.#prepare("SELECT * FROM deployments ORDER BY name").all() as Row[]).map(
      toDeployment,
    );
  }

  /** Records a stored version (status "stored"), or refreshes its spec and source. */
  putVersion(v: Omit<VersionRecord, "createdAt" | "deployedAt" | "status">, now: number): void {
    this.#prepare(
      `INSERT INTO versions(deployment, version, spec, source, files, bytes, created_at,
                            deployed_at, status)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'stored')
       ON CONFLICT(deployment, version) DO UPDATE SET spec = excluded.spec,
         source = excluded.source`,
    ).run(
      v.deployment,
      v.version,
      JSON.stringify(v.spec),
      JSON.stringify(v.source),
      v.files,
      v.bytes,
      now,
      now,
    );
  }

  /**
   * Makes a recorded version the deployment's active one (creating the deployment on its first
   * version), in one transaction; the previously active version becomes "superseded".
   */
  activate(deployment: string, version: string, replicas: number, now: number): void {
    this.transaction(() => {
      const v = this.getVersion(deployment, version);
      if (!v) {
        throw new PrisnError("NOT_FOUND", `version ${version} of ${deployment} is not recorded`);
      }
      this.#prepare(
        `UPDATE versions SET status = 'superseded'
         WHERE deployment = ? AND version != ? AND status = 'active'`,
      ).run(deployment, version);
      this.#prepare(
        "UPDATE versions SET status = 'active', deployed_at = ? WHERE deployment = ? AND version = ?",
      ).run(now, deployment, version);
      this.#prepare(
        `INSERT INTO deployments(name, type, version, replicas, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT(name) DO UPDATE SET type = excluded.type, version = excluded.version,
           replicas = excluded.replicas, updated_at = excluded.updated_at,
           revision = revision + 1`,
      ).run(deployment, v.spec.type, version, replicas, now, now);
    });
  }

  setReplicas(name: string, replicas: number, now: number): void {
    this.#prepare(
      "UPDATE deployments SET replicas = ?, updated_at = ?, revision = revision + 1 WHERE name = ?",
    ).run(
      replicas,
      now,
      name,
    );
  }

  setSuspended(name: string, suspended: boolean, now: number): void {
    this.#prepare(
      "UPDATE deployments SET suspended = ?, updated_at = ?, revision = revision + 1 WHERE name = ?",
    ).run(
      suspended ? 1 : 0,
      now,
      name,
    );
  }

  /** Removes a deployment with its versions, runs, events and process records. */
  deleteDeployment(name: string): void {
    this.transaction(() => {
      for (const table of ["versions", "runs", "events", "processes"]) {
        this.#prepare(`DELETE FROM ${table} WHERE deployment = ?`).run(name);
      }
      this.#prepare("DELETE FROM deployments WHERE name = ?").run(name);
    });
  }

  /** Remembers the latest cron tick handled, so a restarted agent neither repeats nor bursts. */
  setLastScheduled(name: string, at: number | undefined): void {
    // Bookkeeping of its own, not a change of what is desired: no new revision.
    this.#prepare("UPDATE deployments SET last_scheduled_at = ? WHERE name = ?").run(
      at ?? null,
      name,
    );
  }

  // --- versions ----------------------------------------------------------------------------

  getVersion(deployment: string, version: string): VersionRecord | undefined {
    const row = this.#prepare("SELECT * FROM versions WHERE deployment = ? AND version = ?")
      .get(deployment, version) as Row | undefined;
    return row ? toVersion(row) : undefined;
  }

  /** Versions, newest deploy first. */
  listVersions(deployment: string): VersionRecord[] {
    return (this.#prepare(
      "SELECT * FROM versions WHERE deployment = ? ORDER BY deployed_at DESC, rowid DESC",
    ).all(deployment) as Row[]).map(toVersion);
  }

  deleteVersion(deployment: string, version: string): void {
    this.#prepare("DELETE FROM versions WHERE deployment = ? AND version = ?").run(
      deployment,
      version,
    );
  }

  setVersionStatus(deployment: string, version: string, status: VersionStatus): void {
    this.#prepare("UPDATE versions SET status = ? WHERE deployment = ? AND version = ?").run(
      status,
      deployment,
      version,
    );
  }

  // --- mirror (a cluster node's copy of the shared desired state) ----------------------------

  /** Writes a deployment exactly as given (revision and last tick included), as a mirror does. */
  putDeploymentRecord(d: DeploymentRecord): void {
    this.#prepare(
      `INSERT INTO deployments(name, type, version, replicas, suspended, last_scheduled_at,
                               created_at, updated_at, revision)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT(name) DO UPDATE SET type = excluded.type, version = excluded.version,
         replicas = excluded.replicas, suspended = excluded.suspended,
         last_scheduled_at = excluded.last_scheduled_at, created_at = excluded.created_at,
         updated_at = excluded.updated_at, revision = excluded.revision`,
    ).run(
      d.name,
      d.type,
      d.version,
      d.replicas,
      d.suspended ? 1 : 0,
      d.lastScheduledAt ?? null,
      d.createdAt,
      d.updatedAt,
      d.revision,
    );
  }

  /** Removes only the deployment's own row; its versions, runs and events stay. */
  removeDeploymentRecord(name: string): void {
    this.#prepare("DELETE FROM deployments WHERE name = ?").run(name);
  }

  /** Writes a version exactly as given (status and times included), as a mirror does. */
  putVersionRecord(v: VersionRecord): void {
    this.#prepare(
      `INSERT INTO versions(deployment, version, spec, source, files, bytes, created_at,
                            deployed_at, status)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT(deployment, version) DO UPDATE SET spec = excluded.spec,
         source = excluded.source, files = excluded.files, bytes = excluded.bytes,
         created_at = excluded.created_at, deployed_at = excluded.deployed_at,
         status = excluded.status`,
    ).run(
      v.deployment,
      v.version,
      JSON.stringify(v.spec),
      JSON.stringify(v.source),
      v.files,
      v.bytes,
      v.createdAt,
      v.deployedAt,
      v.status,
    );
  }

  /** Every recorded version's identity, whether or not its deployment exists. */
  listVersionIds(): { deployment: string; version: string }[] {
    return (this.#prepare("SELECT deployment, version FROM versions").all() as Row[]).map((r) => ({
      deployment: String(r.deployment),
      version: String(r.version),
    }));
  }

  getMirrorState(key: string): string | undefined {
    const row = this.#prepare("SELECT value FROM mirror_state WHERE key = ?").get(key) as
      | Row
      | undefined;
    return row ? String(row.value) : undefined;
  }

  setMirrorState(key: string, value: string): void {
    this.#prepare(
      "INSERT INTO mirror_state(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    ).run(key, value);
  }

  deleteMirrorState(key: string): void {
    this.#prepare("DELETE FROM mirror_state WHERE key = ?").run(key);
  }

  /** Mirror state entries whose key starts with `prefix`, by key. */
  listMirrorState(prefix: string): { key: string; value: string }[] {
    return (this.#prepare(
      "SELECT key, value FROM mirror_state WHERE substr(key, 1, length(?)) = ? ORDER BY key",
    ).all(prefix, prefix) as Row[]).map((r) => ({ key: String(r.key), value: String(r.value) }));
  }

  // --- runs --------------------------------------------------------------------------------

  /**
   * Writes a run as given (a mirror of another node's run, or a test's); an existing run keeps its
   * identity and creation time and takes the rest.
   */
  putRun(run: RunRecord, createdAt: number): void {
    this.#prepare(
      `INSERT INTO runs(id, deployment, version, status, trigger, node, attempt, parent,
                        scheduled_at, started_at, finished_at, exit_code, reason, pid, replica,
                        last_error, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT(id) DO UPDATE SET status = excluded.status, node = excluded.node,
         started_at = excluded.started_at, finished_at = excluded.finished_at,
         exit_code = excluded.exit_code, reason = excluded.reason, pid = excluded.pid,
         last_error = excluded.last_error`,
    ).run(
      run.id,
      run.deployment,
      run.version,
      run.status,
      run.trigger,
      run.node,
      run.attempt,
      run.parent ?? null,
      run.scheduledAt ?? null,
      run.startedAt ?? null,
      run.finishedAt ?? null,
      run.exitCode ?? null,
      run.reason ?? null,
      run.pid ?? null,
      run.replica ?? null,
      run.lastError ?? null,
      createdAt,
    );
  }

  recordRun(run: RunRecord, now: number): void {
    this.putRun(run, now);
  }

  deleteRun(id: string): void {
    this.#prepare("DELETE FROM runs WHERE id = ?").run(id);
  }

  updateRun(
    id: string,
    fields: RunUpdate,
  ): void {
    const columns: Record<string, string> = {
      node: "node",
      status: "status",
      startedAt: "started_at",
      finishedAt: "finished_at",
      exitCode: "exit_code",
      reason: "reason",
      lastError: "last_error",
      pid: "pid",
    };
    const sets: string[] = [];
    const values: SQLInputValue[] = [];
    for (const [key, value] of Object.entries(fields)) {
      sets.push(`${columns[key]} = ?`);
      values.push((value ?? null) as SQLInputValue);
    }
    if (sets.length === 0) return;
    this.#prepare(`UPDATE runs SET ${sets.join(", ")} WHERE id = ?`).run(...values, id);
  }

  /**
   * Records a ticket as a pending run, in one statement; false (and nothing written) when a run
   * with its id exists already, e.g. the same cron tick submitted twice.
   */
  insertTicket(t: RunTicket, node: string, now: number): boolean {
    const { changes } = this.#prepare(
      `INSERT OR IGNORE INTO runs(id, deployment, version, status, trigger, node, attempt, parent,
                                  scheduled_at, not_before, ticket, created_at)
       VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      t.id,
      t.deployment,
      t.version,
      t.trigger,
      node,
      t.attempt,
      t.parent ?? null,
      t.scheduledAt ?? null,
      t.notBefore ?? null,
      JSON.stringify({ env: t.env, replace: t.replace }),
      now,
    );
    return Number(changes) === 1;
  }

  /** Tickets recorded but not started yet (pending runs), oldest first. */
  pendingTickets(): RunTicket[] {
    const rows = this.#prepare(
      "SELECT * FROM runs WHERE status = 'pending' ORDER BY created_at, rowid",
    ).all() as Row[];
    return rows.map((r) => {
      const extra = r.ticket ? JSON.parse(String(r.ticket)) : {};
      return {
        id: String(r.id),
        deployment: String(r.deployment),
        version: String(r.version),
        trigger: r.trigger as RunTicket["trigger"],
        scheduledAt: opt(r.scheduled_at, Number),
        attempt: Number(r.attempt),
        parent: opt(r.parent, String),
        notBefore: opt(r.not_before, Number),
        env: extra.env,
        replace: extra.replace,
      };
    });
  }

  getRun(id: string): RunRecord | undefined {
    const row = this.#prepare("SELECT * FROM runs WHERE id = ?").get(id) as Row | undefined;
    return row ? toRun(row) : undefined;
  }

  /** Runs, newest first; optionally of one deployment and/or with given statuses. */
  listRuns(options: RunsFilter = {}): RunRecord[] {
    const where: string[] = [];
    const args: SQLInputValue[] = [];
    if (options.deployment) {
      where.push("deployment = ?");
      args.push(options.deployment);
    }
    if (options.namespaces) {
      where.push(
        "substr(deployment, 1, instr(deployment, '/') - 1) IN (SELECT value FROM json_each(?))",
      );
      args.push(JSON.stringify(options.namespaces));
    }
    if (options.replica) {
      where.push("replica = ?");
      args.push(options.replica);
    }
    if (options.statuses?.length) {
      where.push(`status IN (${options.statuses.map(() => "?").join(", ")})`);
      args.push(...options.statuses);
    }
    const sql = `SELECT * FROM runs ${where.length ? "WHERE " + where.join(" AND ") : ""}
                 ORDER BY created_at DESC, rowid DESC LIMIT ?`;
    return (this.#prepare(sql).all(...args, options.limit ?? 20) as Row[]).map(toRun);
  }

  /**
   * Keeps the newest `keepCompleted` completed and `keepFailed` failed runs of a deployment and
   * deletes older finished ones; returns the ids removed (so their logs can go too).
   */
  pruneRuns(deployment: string, keepCompleted: number, keepFailed: number): string[] {
    const removed: string[] = [];
    for (const [status, keep] of [["completed", keepCompleted], ["failed", keepFailed]] as const) {
      const rows = this.#prepare(
        `SELECT id FROM runs WHERE deployment = ? AND status = ?
         ORDER BY created_at DESC, rowid DESC LIMIT -1 OFFSET ?`,
      ).all(deployment, status, keep) as { id: string }[];
      removed.push(...rows.map((r) => r.id));
    }
    if (removed.length) {
      this.#prepare("DELETE FROM runs WHERE id IN (SELECT value FROM json_each(?))").run(
        JSON.stringify(removed),
      );
    }
    return removed;
  }

  /** Counts of runs created since `since`, by status. */
  runCounts(since: number): Record<RunStatus, number> {
    const counts: Record<RunStatus, number> = { pending: 0, running: 0, completed: 0, failed: 0 };
    const rows = this.#prepare(
      "SELECT status, COUNT(*) AS n FROM runs WHERE created_at >= ? GROUP BY status",
    ).all(since) as { status: RunStatus; n: number }[];
    for (const r of rows) counts[r.status] = r.n;
    return counts;
  }

  /** The newest run per deployment (for `status`). */
  latestRuns(): Map<string, RunRecord> {
    const rows = this.#prepare(
      `SELECT r.* FROM runs r JOIN (SELECT deployment, MAX(rowid) AS id FROM runs
        GROUP BY deployment) m ON r.rowid = m.id`,
    ).all() as Row[];
    return new Map(rows.map((r) => [String(r.deployment), toRun(r)]));
  }

  // --- events ------------------------------------------------------------------------------

  /** Records an event; only the newest EVENTS_KEPT per deployment are kept (a crash loop adds many). */
  addEvent(deployment: string, kind: string, message: string, now: number): void {
    const { lastInsertRowid } = this.#prepare(
      "INSERT INTO events(deployment, at, kind, message) VALUES (?, ?, ?, ?)",
    ).run(deployment, now, kind, message);
    if (Number(lastInsertRowid) % 50 === 0) {
      this.#prepare(
        `DELETE FROM events WHERE deployment = ? AND id <= (
           SELECT id FROM events WHERE deployment = ? ORDER BY id DESC LIMIT 1 OFFSET ?)`,
      ).run(deployment, deployment, EVENTS_KEPT);
    }
  }

  /** Events, newest first. */
  listEvents(deployment: string, limit = 10): EventRecord[] {
    return this.#prepare(
      "SELECT * FROM events WHERE deployment = ? ORDER BY id DESC LIMIT ?",
    ).all(deployment, limit) as unknown as EventRecord[];
  }

  // --- processes ---------------------------------------------------------------------------

  putProcess(p: ProcessRecord): void {
    this.#prepare(
      `INSERT INTO processes(id, deployment, pid, start_ticks) VALUES (?, ?, ?, ?)
       ON CONFLICT(id) DO UPDATE SET pid = excluded.pid, start_ticks = excluded.start_ticks`,
    ).run(p.id, p.deployment, p.pid, p.startTicks);
  }

  deleteProcess(id: string): void {
    this.#prepare("DELETE FROM processes WHERE id = ?").run(id);
  }

  listProcesses(): ProcessRecord[] {
    return (this.#prepare("SELECT * FROM processes").all() as Row[]).map((r) => ({
      id: String(r.id),
      deployment: String(r.deployment),
      pid: Number(r.pid),
      startTicks: Number(r.start_ticks),
    }));
  }
}

function toDeployment(r: Row): DeploymentRecord {
  return {
    name: String(r.name),
    type: r.type as DeploymentRecord["type"],
    version: String(r.version),
    replicas: Number(r.replicas),
    suspended: Number(r.suspended) === 1,
    lastScheduledAt: opt(r.last_scheduled_at, Number),
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
    revision: Number(r.revision),
  };
}

function toVersion(r: Row): VersionRecord {
  return {
    deployment: String(r.deployment),
    version: String(r.version),
    spec: JSON.parse(String(r.spec)) as DeploySpec,
    source: JSON.parse(String(r.source)) as SourceInfo,
    files: Number(r.files),
    bytes: Number(r.bytes),
    createdAt: Number(r.created_at),
    deployedAt: Number(r.deployed_at),
    status: r.status as VersionStatus,
  };
}

function opt<T>(v: SQLInputValue, f: (v: SQLInputValue) => T): T | undefined {
  return v === null || v === undefined ? undefined : f(v);
}

function toRun(r: Row): RunRecord {
  return {
    id: String(r.id),
    deployment: String(r.deployment),
    version: String(r.version),
    status: r.status as RunStatus,
    trigger: r.trigger as RunRecord["trigger"],
    node: String(r.node),
    attempt: Number(r.attempt),
    parent: opt(r.parent, String),
    scheduledAt: opt(r.scheduled_at, Number),
    startedAt: opt(r.started_at, Number),
    finishedAt: opt(r.finished_at, Number),
    exitCode: opt(r.exit_code, Number),
    reason: opt(r.reason, String),
    lastError: opt(r.last_error, String),
    pid: opt(r.pid, Number),
    replica: opt(r.replica, String),
  };
}
