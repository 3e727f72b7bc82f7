import { type CronPolicy, decideCron } from "../core/schedule.ts";
import { settingsOf } from "../core/settings.ts";
import type { DeploymentRecord } from "../core/types.ts";
import type { DeploySpec } from "../core/spec.ts";
import type { AgentContext } from "./context.ts";
import { isDiskFull } from "./disk_health.ts";
import { tickRunId } from "../core/dispatch.ts";
import type { Supervisor } from "./supervisor.ts";

/** The cron policy of a cronjob's spec, with prisn's defaults (forbid, catch up latest, 1h). */
export function cronPolicy(spec: DeploySpec, suspended: boolean): CronPolicy {
  const s = settingsOf(spec);
  return {
    schedule: spec.schedule!,
    timezone: spec.timezone,
    concurrency: s.concurrency,
    catchup: s.catchup,
    startingDeadlineMs: s.startingDeadlineMs,
    suspended,
  };
}

interface Entry {
  deployment: DeploymentRecord;
  spec: DeploySpec;
  nextAt?: number;
}

/**
 * Fires cronjobs. Each pass asks the pure decideCron() what is due for the cronjobs whose next
 * tick has come, acts on it and stores the tick handled, so a restarted agent catches up at
 * most once and never fires a tick twice. Sleeps until the earliest next tick (or a change).
 */
export class Scheduler {
  #entries = new Map<string, Entry>();
  #wake?: () => void;
  #dirty = false;
  #stopped = false;
  #loop?: Promise<void>;
  #unwatch?: () => void;

  constructor(readonly ctx: AgentContext, readonly supervisor: Supervisor) {}

  /** Starts firing; cronjobs are re-read whenever desired state changes (whoever changed it). */
  start(): void {
    // Changes are coalesced: a pass that advances many cronjobs' ticks re-reads them once.
    this.#unwatch ??= this.ctx.desired.watch(() => {
      this.#dirty = true;
      this.#wake?.();
    });
    this.reload();
    this.#loop ??= this.#run();
  }

  async stop(): Promise<void> {
    this.#unwatch?.();
    this.#stopped = true;
    this.#wake?.();
    await this.#loop;
  }

  /** Re-reads the cronjobs from desired state. */
  reload(): void {
    const next = new Map<string, Entry>();
    for (const d of this.ctx.desired.listDeployments()) {
      if (d.type !== "cronjob") continue;
      const spec = this.ctx.desired.getVersion(d.name, d.version)!.spec;
      next.set(d.name, { deployment: d, spec });
    }
    this.#entries = next;
    this.#dirty = false;
    this.#wake?.();
  }

  /** When each cronjob fires next (for status and get). */
  nextAt(name: string): number | undefined {
    return this.#entries.get(name)?.nextAt;
  }

  /**
   * One pass at time `now`: fires, skips and records what is due (one SQLite transaction). Only
   * the leader fires (locally: always this node); the others keep their next times.
   */
  tick(now: number): void {
    if (!this.supervisor.dispatcher.isLeader()) return;
    this.ctx.records.transaction(() => this.#tick(now));
  }

  #tick(now: number): void {
    for (const [name, entry] of this.#entries) {
      if (entry.nextAt !== undefined && entry.nextAt > now) continue;
      const d = entry.deployment;
      const decision = decideCron(cronPolicy(entry.spec, d.suspended), {
        lastScheduledAt: d.lastScheduledAt,
        activeRuns: this.supervisor.activeCount(name),
        deployedAt: d.createdAt,
      }, now);
      // The tick is advanced before its ticket goes out (a failover can never fire it twice):
      // the ticket waits for `advanced`; locally both are written in this one transaction.
      let advanced: Promise<unknown> = Promise.resolve();
      if (decision.lastScheduledAt !== d.lastScheduledAt) {
        d.lastScheduledAt = decision.lastScheduledAt;
        advanced = this.ctx.desired.setLastScheduled(name, decision.lastScheduledAt);
        // A pass rolled back on a full disk is counted (and tried again) by #run.
        advanced.catch((e) => {
          if (!isDiskFull(e)) this.ctx.event(name, "TickNotAdvanced", (e as Error).message);
        });
      }
      for (const action of decision.actions) {
        if (action.kind === "fire") {
          this.#fire(name, action.scheduledAt, action.replaceActive, action.catchup, advanced);
        } else if (action.kind === "skip") {
          this.ctx.event(name, "TickSkipped", action.reason);
        } else {
          this.ctx.event(name, "TicksMissed", action.reason);
        }
      }
      entry.nextAt = decision.nextAt;
    }
  }

  /**
   * Submits the tick's ticket: recorded as a pending run in the same transaction that stores the
   * tick handled (locally), with an id derived from the tick, so it is neither lost nor doubled.
   */
  #fire(
    name: string,
    scheduledAt: number,
    replace: boolean,
    catchup: boolean,
    advanced: Promise<unknown>,
  ): void {
    const d = this.#entries.get(name)!.deployment;
    const at = new Date(scheduledAt).toISOString();
    if (catchup) this.ctx.event(name, "CatchUp", `running the missed tick of ${at}`);
    this.supervisor.dispatcher.submit({
      id: tickRunId(name, scheduledAt),
      deployment: name,
      version: d.version,
      trigger: "schedule",
      scheduledAt,
      attempt: 1,
      replace: replace || undefined,
    }, { after: advanced }).then((submitted) => {
      if (!submitted) this.ctx.event(name, "TickSkipped", `the tick at ${at} has its run already`);
    }, (e) => this.ctx.event(name, "FireFailed", (e as Error).message));
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      if (this.#dirty) this.reload();
      let retryAt = 0;
      try {
        this.tick(Date.now());
      } catch (e) {
        // A full disk: the tick was not recorded, so it is due again; look again in a second.
        if (!isDiskFull(e)) throw e;
        this.ctx.disk.failed("records", e);
        retryAt = Date.now() + 1_000;
      }
      let earliest = Infinity;
      for (const e of this.#entries.values()) {
        if (e.nextAt !== undefined) earliest = Math.min(earliest, e.nextAt);
      }
      // A follower looks again each second: it may become the leader at any time.
      const most = this.supervisor.dispatcher.isLeader() ? 60_000 : 1_000;
      const wait = Math.max(0, retryAt - Date.now(), Math.min(earliest - Date.now(), most));
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, wait);
        this.#wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.#wake = undefined;
    }
  }
}
