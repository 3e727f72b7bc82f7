/**
 * Run tickets through a JetStream work-queue stream, shared by every node (DESIGN.md "The
 * cluster"). A ticket is one message; every node pulls from one durable consumer with explicit
 * acks, so each message is held by one node at a time and removed once acknowledged.
 *
 * What the server does and what this file adds (measured on nats-server 2.9.10):
 * - A message not acknowledged within `ack_wait` is delivered again, to any node; `working()`
 *   (`+WPI` on the message's ack subject) restarts that clock. A node sends it for every message
 *   it holds every ackWait/3 as a request, so the server's answer proves it arrived, and sends
 *   its ack the same way until answered (acks sent while NATS restarts are otherwise dropped).
 *   When it got no answer for longer than `ack_wait` it reports the ticket lost (`onLost`): by
 *   then another node may hold it. An ack from an earlier delivery still counts.
 * - After `max_deliver` deliveries the server stops delivering the message but keeps it in the
 *   stream. A handler that throws on the last delivery gets the message terminated and its run
 *   recorded failed; a last delivery that expired (its node died) is announced by a
 *   MAX_DELIVERIES advisory, and the node that takes it deletes the message and records the run
 *   failed. A sweep at start (and on the leader, periodically) does the same for what no node
 *   heard about.
 * - `Nats-Msg-Id` dedup is forgotten after a server restart for messages no longer stored: a
 *   ticket id already recorded on this node is acknowledged without running again, and the
 *   cron's last-handled tick in KV stays the real guard against a tick twice.
 */
import type {
  ConsumerMessages,
  JetStreamClient,
  JetStreamManager,
  JsMsg,
  MsgRequest,
} from "@nats-io/jetstream";
import { AckPolicy, JetStreamApiError } from "@nats-io/jetstream";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import type { Dispatcher, SubmitOptions } from "../core/dispatch.ts";
import { PrisnError } from "../core/errors.ts";
import type { RunHistory } from "../core/run_history.ts";
import type { RunTicket } from "../core/types.ts";

/** The NATS handles a dispatcher works through, opened (and closed) by the caller. */
export interface ClusterDispatcherNats {
  /** For confirmed acks (requests on a delivery's ack subject) and the MAX_DELIVERIES advisory. */
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
}

export interface ClusterDispatcherOptions {
  /** The work-queue stream (retention workqueue, an explicit duplicate window). */
  stream: string;
  /** The consumer's filter subject, e.g. `prisn.work.>` (without a wildcard, also where tickets go). */
  subject: string;
  /**
   * Where a ticket is published, within `subject`, e.g. `prisn.work.<deployment>`.
   * @default the `subject` itself
   */
  publishSubject?: (ticket: RunTicket) => string;
  /** This node's run history: tickets it submits or takes are recorded here. */
  records: RunHistory;
  /** This node's name, recorded on the runs it takes. */
  node: string;
  /** Whether this node holds the leader lease. */
  isLeader: () => boolean;
  /** How many of a deployment's `desired` replicas are placed on this node. */
  replicasHere: (deployment: string, desired: number) => number;
  /** Tells when `replicasHere` may answer differently. @default never */
  onPlacementChange?: (listener: () => void) => () => void;
  /** Whether this node takes new tickets now (not while it drains). @default always */
  accepting?: () => boolean;
  /** The lease epoch this node acts under (stamped on cron ticks). @default 0: none */
  epoch?: () => number;
  /** Whether an epoch comes from a replaced leader (ticks stamped so are refused). @default never */
  isStale?: (epoch: number) => boolean;
  /** Whether this node may name a replica `NAME-index`. @default every name */
  ownsReplica?: (deployment: string, index: number, desired: number) => boolean;
  /** The durable pull consumer every node shares. @default "runs" */
  consumer?: string;
  /** How long a delivered message is held without an ack or `working()`. @default 30_000 */
  ackWaitMs?: number;
  /** Deliveries of one message before it is given up (its run recorded failed). @default 5 */
  maxDeliver?: number;
  /** Tickets this node hands to the handler at once (and pulls no more past). @default 16 */
  maxInFlight?: number;
  /**
   * A ticket due (`notBefore`) within this is held here with `working()` until due; a later one
   * goes back to the server with a delayed nak (one delivery spent) and comes back near its time.
   * @default ackWaitMs
   */
  holdMs?: number;
  /** A delivery whose handler threw is offered again after this. @default 1_000 */
  retryDelayMs?: number;
  /** How long submit() keeps trying to publish before it gives up. @default 10_000 */
  publishTimeoutMs?: number;
  /** How long one pull request waits for messages. @default 5_000 (at least 1_000) */
  pullExpiresMs?: number;
  /** How often the leader looks for messages past max_deliver that no node heard of. @default 60_000 */
  sweepIntervalMs?: number;
  /**
   * Called once when this node could not keep a handed-over ticket's message for longer than
   * `ack_wait` (connection lost): another node may run it now, so the agent kills its own run.
   * @default nothing
   */
  onLost?: (ticketId: string) => void;
  /** Errors the consumer recovered from (a pull that failed, a malformed message). @default nothing */
  onError?: (error: Error) => void;
  /** Wall clock for `notBefore`. @default Date.now */
  now?: () => number;
}

type Settings = Required<
  Omit<
    ClusterDispatcherOptions,
    "isLeader" | "replicasHere" | "onPlacementChange" | "ownsReplica"
  >
>;

/**
 * The cluster's dispatcher: tickets go to the work queue and any node runs them. Leadership and
 * placement come from the functions given (the lease and the placement keys live elsewhere).
 */
export class ClusterDispatcher implements Dispatcher {
  readonly #settings: Settings;
  readonly #nats: ClusterDispatcherNats;
  readonly #isLeader: () => boolean;
  readonly #replicasHere: (deployment: string, desired: number) => number;
  readonly #onPlacementChange?: (listener: () => void) => () => void;
  readonly #ownsReplica?: (deployment: string, index: number, desired: number) => boolean;
  readonly #consumers = new Set<TicketConsumer>();
  readonly #lostListeners = new Set<(ticketId: string) => void>();

  constructor(nats: ClusterDispatcherNats, options: ClusterDispatcherOptions) {
    const ackWaitMs = options.ackWaitMs ?? 30_000;
    this.#nats = nats;
    this.#isLeader = options.isLeader;
    this.#replicasHere = options.replicasHere;
    this.#onPlacementChange = options.onPlacementChange;
    this.#ownsReplica = options.ownsReplica;
    this.#settings = {
      stream: options.stream,
      subject: options.subject,
      publishSubject: options.publishSubject ?? (() => options.subject),
      records: options.records,
      node: options.node,
      consumer: options.consumer ?? "runs",
      ackWaitMs,
      maxDeliver: options.maxDeliver ?? 5,
      maxInFlight: options.maxInFlight ?? 16,
      holdMs: options.holdMs ?? ackWaitMs,
      retryDelayMs: options.retryDelayMs ?? 1_000,
      publishTimeoutMs: options.publishTimeoutMs ?? 10_000,
      pullExpiresMs: Math.max(1_000, options.pullExpiresMs ?? 5_000),
      sweepIntervalMs: options.sweepIntervalMs ?? 60_000,
      epoch: options.epoch ?? (() => 0),
      accepting: options.accepting ?? (() => true),
      isStale: options.isStale ?? (() => false),
      onLost: (id) => {
        options.onLost?.(id);
        for (const l of this.#lostListeners) l(id);
      },
      onError: options.onError ?? (() => {}),
      now: options.now ?? Date.now,
    };
  }

  isLeader(): boolean {
    return this.#isLeader();
  }

  onPlacementChange(listener: () => void): () => void {
    return this.#onPlacementChange?.(listener) ?? (() => {});
  }

  replicasHere(deployment: string, desired: number): number {
    return this.#replicasHere(deployment, desired);
  }

  onTicketLost(listener: (ticketId: string) => void): () => void {
    this.#lostListeners.add(listener);
    return () => this.#lostListeners.delete(listener);
  }

  ownsReplica(deployment: string, index: number, desired: number): boolean {
    return this.#ownsReplica?.(deployment, index, desired) ?? true;
  }

  /**
   * Publishes the ticket with `Nats-Msg-Id: ticket.id` and records it here as pending, once
   * `after` (the cron tick advanced in KV) settled; false, with nothing published, when it
   * rejects. False, with nothing recorded, when this node knows the id already or the stream
   * saw it within its duplicate window (the same cron tick from an old and a new leader). A
   * publish without an answer is tried again with the same id (the duplicate window makes that
   * safe) until `publishTimeoutMs`; then it throws UNAVAILABLE and nothing is recorded here (a
   * publish still buffered by the client may land once NATS is back: submitting again is then a
   * duplicate). A stream that refuses the ticket (full, missing) throws UNAVAILABLE at once.
   */
  async submit(ticket: RunTicket, options: SubmitOptions = {}): Promise<boolean> {
    const { records, publishSubject, node, now, publishTimeoutMs } = this.#settings;
    try {
      await options.after;
    } catch {
      return false;
    }
    if (records.getRun(ticket.id)) return false;
    const subject = publishSubject(ticket);
    // A cron tick carries the epoch it was fired under (fencing, see RunTicket.epoch).
    const epoch = this.#settings.epoch();
    const data = JSON.stringify(
      ticket.trigger === "schedule" && epoch > 0 ? { ...ticket, epoch } : ticket,
    );
    const deadline = performance.now() + publishTimeoutMs;
    let retried = false;
    while (true) {
      const left = deadline - performance.now();
      try {
        const ack = await this.#nats.js.publish(subject, data, {
          msgID: ticket.id,
          timeout: Math.max(100, Math.min(left, 2_000)),
        });
        // After an unanswered try, a duplicate is most likely that try having landed.
        if (ack.duplicate && !retried) return false;
        break;
      } catch (e) {
        if (e instanceof JetStreamApiError) {
          throw new PrisnError(
            "UNAVAILABLE",
            `could not queue run ${ticket.id}: the NATS work queue refused it (${e.message})`,
            { cause: e },
          );
        }
        if (performance.now() >= deadline || this.#nats.nc.isClosed()) {
          throw new PrisnError(
            "UNAVAILABLE",
            `could not queue run ${ticket.id}: the NATS work queue did not answer ` +
              `(${(e as Error).message}); check the NATS server and try again`,
            { cause: e },
          );
        }
        retried = true;
        await new Promise((r) => setTimeout(r, Math.min(250, Math.max(0, left))));
      }
    }
    // This node's consumer may have recorded it already: the publish was still ours.
    records.insertTicket(ticket, node, now());
    return true;
  }

  /**
   * Pulls tickets from the shared consumer and hands each to `handler` once due. The message is
   * kept alive while the handler runs and until the run left "pending" (started, or recorded
   * failed), then acknowledged; a handler that throws gets it offered again (the last delivery
   * is terminated and the run recorded failed). The returned function stops pulling; tickets
   * already handed over keep their messages until they are settled.
   */
  consume(handler: (ticket: RunTicket) => Promise<void>): () => void {
    const consumer = new TicketConsumer(this.#nats, this.#settings, handler, this.#isLeader);
    this.#consumers.add(consumer);
    consumer.start();
    return () => {
      consumer.stop();
      this.#consumers.delete(consumer);
    };
  }

  /** Tickets this node holds until their `notBefore` (those due later wait on the server). */
  waiting(deployment: string): number {
    let n = 0;
    for (const c of this.#consumers) n += c.waiting(deployment);
    return n;
  }
}

/** One message this node holds, from delivery to ack (or until given up). */
interface Held {
  ticket: RunTicket;
  msg: JsMsg;
  /** The message's ack subject. */
  reply: string;
  /** hold: not due yet; handle: the handler runs; settle: waiting for the run to leave pending. */
  phase: "hold" | "handle" | "settle" | "ack";
  /** performance.now() when a `+WPI` (or the delivery) last provably reached the server. */
  confirmedAt: number;
  lost: boolean;
  timer?: ReturnType<typeof setTimeout>;
}

const SETTLE_POLL_MS = 50;
/** How often a node that takes no tickets (draining) looks again. */
const ACCEPTING_POLL_MS = 500;
/** A ticket a draining node gives back is held off until its open pull expired, and this. */
const NOT_ACCEPTING_MARGIN_MS = 250;
const WPI = new TextEncoder().encode("+WPI");
const ACK = new TextEncoder().encode("+ACK");

/**
 * The ack subject of a delivery. The JetStream ack protocol is a publish to the message's reply
 * subject; the client's JsMsg type omits `reply` though its implementation has it, and sending
 * `+WPI`/`+ACK` ourselves as requests is what gives a confirmed, repeatable ack.
 */
function replyOf(msg: JsMsg): string {
  const reply = (msg as JsMsg & { reply?: string }).reply;
  if (!reply) throw new Error(`delivery ${msg.seq} has no ack subject`);
  return reply;
}

/** One consume() call: the pull loop, the held messages and their keep-alive. */
class TicketConsumer {
  #held = new Map<string, Held>();
  #stopped = false;
  #busy = 0;
  #slotFreed?: () => void;
  #wake?: () => void;
  #batch?: ConsumerMessages;
  #tick?: ReturnType<typeof setInterval>;
  #lastWorking = 0;
  /** performance.now() by which the pull request in flight expires on the server. */
  #pullEndsAt = 0;
  #advisories?: Subscription;
  #sweeper?: ReturnType<typeof setInterval>;

  constructor(
    readonly nats: ClusterDispatcherNats,
    readonly s: Settings,
    readonly handler: (ticket: RunTicket) => Promise<void>,
    readonly isLeader: () => boolean,
  ) {}

  start(): void {
    const { stream, consumer, sweepIntervalMs } = this.s;
    this.#advisories = this.nats.nc.subscribe(
      `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${stream}.${consumer}`,
      {
        queue: `${consumer}-max-deliveries`,
        callback: (err, m) => {
          if (err) return;
          try {
            const a = m.json<{ stream_seq: number; deliveries: number }>();
            this.#giveUp(a.stream_seq, notAcknowledged(a.deliveries)).catch((e) =>
              this.s.onError(e)
            );
          } catch (e) {
            this.s.onError(e as Error);
          }
        },
      },
    );
    this.#sweeper = setInterval(() => {
      if (this.isLeader()) this.#sweep().catch((e) => this.s.onError(e));
    }, sweepIntervalMs);
    this.#pull().catch((e) => this.s.onError(e));
  }

  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#batch?.stop();
    this.#wake?.();
    this.#slotFreed?.();
    clearInterval(this.#sweeper);
    this.#advisories?.unsubscribe();
    for (const h of [...this.#held.values()]) {
      if (h.phase !== "hold") continue;
      this.#release(h);
      const due = Math.max(0, (h.ticket.notBefore ?? 0) - this.s.now());
      if (!this.#isClosed()) h.msg.nak(due);
    }
    this.#stopTickingIfIdle();
  }

  waiting(deployment: string): number {
    let n = 0;
    for (const h of this.#held.values()) {
      if (h.phase === "hold" && h.ticket.deployment === deployment) n++;
    }
    return n;
  }

  #isClosed(): boolean {
    return this.nats.nc.isClosed();
  }

  // --- pulling ---------------------------------------------------------------------------------

  async #pull(): Promise<void> {
    const { js } = this.nats;
    const { stream, consumer, maxInFlight, pullExpiresMs } = this.s;
    let ready = false;
    let backoff = 0;
    while (!this.#stopped && !this.#isClosed()) {
      while (this.#busy >= maxInFlight && !this.#stopped) {
        await new Promise<void>((r) => this.#slotFreed = r);
      }
      // A draining node takes no new tickets (its runs under way finish).
      while (!this.s.accepting() && !this.#stopped) {
        await new Promise<void>((r) => {
          const t = setTimeout(r, ACCEPTING_POLL_MS);
          this.#wake = () => (clearTimeout(t), r());
        });
      }
      if (this.#stopped) break;
      try {
        if (!ready) {
          await this.#api(this.#ensureConsumer());
          ready = true;
          this.#sweep().catch((e) => this.s.onError(e));
        }
        const c = await this.#api(js.consumers.get(stream, consumer));
        if (this.#stopped) break;
        this.#pullEndsAt = performance.now() + pullExpiresMs;
        const batch = await c.fetch({
          max_messages: maxInFlight - this.#busy,
          expires: pullExpiresMs,
        });
        this.#batch = batch;
        if (this.#stopped) batch.stop();
        for await (const m of batch) this.#receive(m);
        backoff = 0;
      } catch (e) {
        if (this.#stopped || this.#isClosed()) break;
        this.s.onError(e as Error);
        ready = false;
        backoff = Math.min(2_000, backoff ? backoff * 2 : 100);
        await new Promise<void>((r) => {
          const t = setTimeout(r, backoff);
          this.#wake = () => (clearTimeout(t), r());
        });
      } finally {
        this.#batch = undefined;
      }
    }
  }

  /** Creates the shared durable consumer, or brings an existing one to these settings. */
  async #ensureConsumer(): Promise<void> {
    const { jsm } = this.nats;
    const { stream, consumer, subject, ackWaitMs, maxDeliver } = this.s;
    const settings = { ack_wait: ackWaitMs * 1_000_000, max_deliver: maxDeliver };
    try {
      await jsm.consumers.add(stream, {
        durable_name: consumer,
        ack_policy: AckPolicy.Explicit,
        filter_subject: subject,
        ...settings,
      });
    } catch (e) {
      // 2.10+ refuses "create" over a consumer with other settings (2.9 updates it in place).
      const info = await jsm.consumers.info(stream, consumer).catch(() => undefined);
      if (!info) throw e;
      await jsm.consumers.update(stream, consumer, settings);
    }
  }

  /** A JetStream API call that gives up (rejects) after ackWait/3, between 1 and 5 s. */
  #api<T>(call: Promise<T>): Promise<T> {
    const ms = Math.min(5_000, Math.max(1_000, this.s.ackWaitMs / 3));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`NATS did not answer within ${ms} ms`)), ms);
    });
    call.catch(() => {}); // answered after we gave up
    return Promise.race([call, late]).finally(() => clearTimeout(timer));
  }

  /** Sends an ack-protocol payload as a request: true once the server answered it. */
  async #confirm(reply: string, payload: Uint8Array, timeoutMs: number): Promise<boolean> {
    if (this.#isClosed()) return false;
    try {
      await this.nats.nc.request(reply, payload, { timeout: Math.max(50, timeoutMs) });
      return true;
    } catch {
      return false;
    }
  }

  #receive(msg: JsMsg): void {
    let ticket: RunTicket;
    let reply: string;
    try {
      ticket = parseTicket(msg.data);
      reply = replyOf(msg);
      if (ticket.epoch !== undefined && this.s.isStale(ticket.epoch)) {
        msg.term();
        const reason = `refused: fired by a replaced leader (epoch ${ticket.epoch})`;
        const { records } = this.s;
        if (!records.getRun(ticket.id)) records.insertTicket(ticket, this.s.node, this.s.now());
        if (records.getRun(ticket.id)?.status === "pending") {
          records.updateRun(ticket.id, { status: "failed", finishedAt: this.s.now(), reason });
        }
        this.s.onError(new Error(`${ticket.id}: ${reason}`));
        return;
      }
    } catch (e) {
      msg.term();
      this.s.onError(new Error(`dropped a malformed ticket (seq ${msg.seq})`, { cause: e }));
      return;
    }
    const held = this.#held.get(ticket.id);
    if (held) {
      if (held.msg.seq !== msg.seq || held.phase === "ack") {
        // The same id published twice (dedup forgotten), or a redelivery racing our ack.
        msg.ack();
        return;
      }
      // The server gave the message back to us (our keep-alive did not reach it in time).
      held.msg = msg;
      held.reply = reply;
      held.lost = false;
      held.confirmedAt = performance.now();
      return;
    }
    if (this.#stopped) {
      msg.nak();
      return;
    }
    // Drained while a pull asked before it was still open on the server: the ticket goes back,
    // held off until that pull expired so that it reaches another node. On its last delivery it
    // runs here rather than fail.
    if (!this.s.accepting() && msg.info.deliveryCount < this.s.maxDeliver) {
      msg.nak(Math.max(0, this.#pullEndsAt - performance.now()) + NOT_ACCEPTING_MARGIN_MS);
      return;
    }
    const h: Held = {
      ticket,
      msg,
      reply,
      phase: "hold",
      confirmedAt: performance.now(),
      lost: false,
    };
    this.#held.set(ticket.id, h);
    this.#startTicking();
    const due = (ticket.notBefore ?? 0) - this.s.now();
    if (due <= 0) return this.#handOverSafely(h);
    if (due > this.s.holdMs && msg.info.deliveryCount + 1 < this.s.maxDeliver) {
      this.#release(h);
      msg.nak(due);
      return;
    }
    h.timer = setTimeout(() => this.#handOverSafely(h), due);
  }

  #handOverSafely(h: Held): void {
    this.#handOver(h).catch((e) => {
      this.s.onError(e as Error);
      if (this.#held.get(h.ticket.id) === h) this.#release(h); // redelivered after ack_wait
    });
  }

  // --- handing over ----------------------------------------------------------------------------

  async #handOver(h: Held): Promise<void> {
    const { records, node, now, maxDeliver, retryDelayMs } = this.s;
    if (this.#held.get(h.ticket.id) !== h || h.lost) return;
    const known = records.getRun(h.ticket.id);
    if (known && known.status !== "pending") return void this.#ack(h); // taken here already
    if (!known) records.insertTicket(h.ticket, node, now());
    h.phase = "handle";
    this.#busy++;
    try {
      await this.handler(h.ticket);
    } catch (e) {
      const error = e as Error;
      if (this.#held.get(h.ticket.id) !== h) return;
      if (h.lost) return this.#release(h); // someone else may hold it now
      if (h.msg.info.deliveryCount >= maxDeliver) {
        h.msg.term();
        this.#recordFailed(h.ticket, `failed on all ${maxDeliver} deliveries: ${error.message}`);
      } else {
        h.msg.nak(retryDelayMs);
      }
      this.#release(h);
      return;
    } finally {
      this.#busy--;
      this.#slotFreed?.();
    }
    // The handler returns once the run is under way; its record leaves "pending" when the
    // process started (or the run was recorded failed). Until then the message stays ours.
    h.phase = "settle";
    this.#busy++;
    try {
      while (!h.lost && this.#held.get(h.ticket.id) === h) {
        if (records.getRun(h.ticket.id)?.status !== "pending") break;
        await new Promise((r) => setTimeout(r, SETTLE_POLL_MS));
      }
    } finally {
      this.#busy--;
      this.#slotFreed?.();
    }
    if (h.lost || this.#held.get(h.ticket.id) !== h) {
      if (this.#held.get(h.ticket.id) === h) this.#release(h);
      return;
    }
    await this.#ack(h);
  }

  /** Acks until the server answered (a repeated ack is harmless), or the message is lost. */
  async #ack(h: Held): Promise<void> {
    const timeout = this.s.ackWaitMs / 6;
    h.phase = "ack";
    while (!h.lost && this.#held.get(h.ticket.id) === h && !this.#isClosed()) {
      if (await this.#confirm(h.reply, ACK, timeout)) break;
      await new Promise((r) => setTimeout(r, Math.min(250, timeout)));
    }
    if (this.#held.get(h.ticket.id) === h) this.#release(h);
  }

  #release(h: Held): void {
    clearTimeout(h.timer);
    if (this.#held.get(h.ticket.id) === h) this.#held.delete(h.ticket.id);
    this.#stopTickingIfIdle();
  }

  // --- keeping messages alive ------------------------------------------------------------------

  #startTicking(): void {
    this.#tick ??= setInterval(() => this.#keepAlive(), Math.max(20, this.s.ackWaitMs / 6));
  }

  #stopTickingIfIdle(): void {
    if (this.#held.size === 0 && this.#tick !== undefined) {
      clearInterval(this.#tick);
      this.#tick = undefined;
    }
  }

  /** Every ackWait/6: lost checks; every ackWait/3: a confirmed `+WPI` for each held message. */
  #keepAlive(): void {
    this.#checkLost();
    const { ackWaitMs } = this.s;
    const sentAt = performance.now();
    if (sentAt - this.#lastWorking < ackWaitMs / 3 - 5 || this.#isClosed()) return;
    this.#lastWorking = sentAt;
    for (const h of this.#held.values()) {
      if (h.lost || h.phase === "ack") continue;
      const reply = h.reply;
      this.#confirm(reply, WPI, ackWaitMs / 3).then((ok) => {
        if (ok && h.reply === reply) h.confirmedAt = Math.max(h.confirmedAt, sentAt);
      });
    }
  }

  #checkLost(): void {
    const now = performance.now();
    const closed = this.#isClosed();
    for (const h of [...this.#held.values()]) {
      if (!h.lost && now - h.confirmedAt > this.s.ackWaitMs) {
        if (h.phase === "hold") {
          this.#release(h); // nothing started: whoever gets it next holds it
          continue;
        }
        h.lost = true;
        try {
          this.s.onLost(h.ticket.id);
        } catch (e) {
          this.s.onError(e as Error);
        }
      }
      // A closed connection never acks again: forget what is lost (its handler may still run).
      if (closed && h.lost) this.#release(h);
    }
  }

  // --- messages past max_deliver ---------------------------------------------------------------

  /**
   * Messages the consumer will never deliver again: with nothing awaiting an ack, every message
   * at or below the consumer's delivered sequence is one past max_deliver.
   */
  async #sweep(): Promise<void> {
    const { jsm } = this.nats;
    const { stream, consumer, subject } = this.s;
    const info = await jsm.consumers.info(stream, consumer);
    if (info.num_ack_pending > 0) return;
    const last = info.delivered.stream_seq;
    let seq = 1;
    while (seq <= last) {
      // STREAM.MSG.GET takes next_by_subj (server ≥ 2.9) though the client's type omits it.
      const next = { seq, next_by_subj: subject } as unknown as MsgRequest;
      const m = await jsm.streams.getMessage(stream, next);
      if (!m || m.seq > last) return;
      await this.#giveUp(m.seq, notAcknowledged(this.s.maxDeliver));
      seq = m.seq + 1;
    }
  }

  /** Deletes a message past max_deliver; the node whose delete succeeds records the run failed. */
  async #giveUp(seq: number, reason: string): Promise<void> {
    const { jsm } = this.nats;
    const { stream } = this.s;
    const m = await jsm.streams.getMessage(stream, { seq });
    if (!m) return;
    let ticket: RunTicket | undefined;
    try {
      ticket = parseTicket(m.data);
    } catch { /* malformed: delete it all the same */ }
    let deleted = false;
    try {
      deleted = await jsm.streams.deleteMessage(stream, seq, false);
    } catch { /* another node deleted it first */ }
    if (deleted && ticket) this.#recordFailed(ticket, reason);
  }

  #recordFailed(ticket: RunTicket, reason: string): void {
    const { records, node, now } = this.s;
    const known = records.getRun(ticket.id);
    if (known && known.status !== "pending") return; // it ran here; only the ack was lost
    if (!known) records.insertTicket(ticket, node, now());
    records.updateRun(ticket.id, { status: "failed", finishedAt: now(), reason });
    records.addEvent(ticket.deployment, "RunFailed", `${ticket.id} failed: ${reason}`, now());
  }
}

function notAcknowledged(deliveries: number): string {
  return `not acknowledged after ${deliveries} ${deliveries === 1 ? "delivery" : "deliveries"}`;
}

function parseTicket(data: Uint8Array): RunTicket {
  const t = JSON.parse(new TextDecoder().decode(data)) as RunTicket;
  if (
    typeof t?.id !== "string" || typeof t.deployment !== "string" ||
    typeof t.version !== "string" || typeof t.attempt !== "number"
  ) {
    throw new Error("not a run ticket");
  }
  return t;
}
