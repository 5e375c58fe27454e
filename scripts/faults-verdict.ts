import type { CopyEvidence, StoredEvidence } from './faults-evidence';
import { type Fault, type FaultKind, hitLiveProcess } from './faults-inject';
import type { SentMessage } from './faults-load';
import type { MailSession } from './faults-mailbox';

// The fault suite's verdict: every message a sender tried, judged from the sender's side (what it sent, what it
// was answered) against what PostgreSQL and MinIO hold and what reached the forward mailbox. The rules:
//   - a 250 is a promise: the message is held once, its bytes are the sender's, and it is delivered;
//   - a 4xx or no final reply leaves the message held once, intact and delivered, or not held at all;
//   - a copy is the sender's bytes after our Received header; copies are counted, not messages with a copy;
//   - a second copy is excused only when the suite can show its cause: a worker killed with a delivery session
//     open, the copy the last on the session that the kill ended, and the resend on a session opened after it
//     (the one window between the receiving server's 250 and our ledger write); at most one per such kill;
//   - every planned fault hit a live process, the service came back after each, and enough mail got a 250.

export interface VerdictInput {
  sent: SentMessage[];
  stored: StoredEvidence[];
  copies: CopyEvidence[];
  sessions: Map<string, MailSession>;
  faults: Fault[];
  minAcked: number;
}

interface Problem {
  kind: string;
  detail: string;
}

/** One sent message with what became of it. */
interface Judged {
  m: SentMessage;
  phase: FaultKind;
  stored: StoredEvidence[];
  copies: CopyEvidence[];
  storedVerified: number;
  copiesVerified: number;
}

function groupBy<T>(items: T[], key: (t: T) => string | undefined): Map<string, T[]> {
  const map = new Map<string, T[]>();
  for (const t of items) {
    const k = key(t);
    if (k !== undefined) map.set(k, [...(map.get(k) ?? []), t]);
  }
  return map;
}

/** The fault whose phase a moment falls in: the last one that began before it (the first one before any). */
function phaseOf(faults: Fault[], t: number): FaultKind {
  return faults.filter((f) => f.phaseFrom <= t).at(-1)?.kind ?? faults[0]?.kind ?? 'ingest';
}

/** Held rows of one message: at most one, readable, with the sender's bytes, under the queue id of its 250. */
function judgeStored(j: Judged, problems: Problem[]): void {
  const { m, stored } = j;
  if (stored.length > 1)
    problems.push({
      kind: 'HELD TWICE',
      detail: `${m.messageId}: ${stored.map((s) => s.queueId).join(', ')}`,
    });
  for (const s of stored) {
    if (s.defect)
      problems.push({
        kind: m.outcome === 'acked' ? 'CORRUPT' : 'HALF-STORED',
        detail: `${m.messageId} (${m.outcome}, queue id ${s.queueId}): ${s.defect}`,
      });
    else if (s.sha256 !== m.sha256)
      problems.push({
        kind: 'HELD BYTES DIFFER',
        detail: `${m.messageId} (${m.outcome}, queue id ${s.queueId}): the body after our Received header is not the sender's ${m.size} bytes`,
      });
    else j.storedVerified++;
    if (m.outcome === 'acked' && s.queueId !== m.queueId)
      problems.push({
        kind: 'WRONG ROW',
        detail: `${m.messageId}: the 250 said queued as ${m.queueId}, the row is ${s.queueId}`,
      });
  }
  if (m.outcome === 'acked' && stored.length === 0)
    problems.push({
      kind: 'LOST',
      detail: `${m.messageId} got 250 (queued as ${m.queueId}) and is not held`,
    });
}

/** Copies of one message: each the sender's bytes behind one Received header of ours; held and recorded. */
function judgeCopies(j: Judged, problems: Problem[]): void {
  const { m, stored, copies } = j;
  for (const c of copies)
    if (c.ours === 1 && c.sha256 === m.sha256) j.copiesVerified++;
    else
      problems.push({
        kind: 'FORWARDED BYTES DIFFER',
        detail: `${m.messageId}: a copy with ${c.ours} Received header(s) of ours whose remaining bytes are not the sender's`,
      });
  if (stored.length > 0 && copies.length === 0)
    problems.push({
      kind: 'UNDELIVERED',
      detail: `${m.messageId} (${m.outcome}) is held and never reached the mailbox`,
    });
  if (stored.length === 0 && copies.length > 0)
    problems.push({
      kind: 'DELIVERED UNHELD',
      detail: `${m.messageId} (${m.outcome}) was forwarded but is not held`,
    });
  if (copies.length > 0 && stored.some((s) => !s.ledgerDelivered))
    problems.push({
      kind: 'NOT IN LEDGER',
      detail: `${m.messageId} reached the mailbox but the ledger does not record it delivered (it would go again)`,
    });
}

/** Rows and copies that no sender sent: the verdict cannot vouch for what it cannot trace. */
function judgeStrangers(v: VerdictInput, problems: Problem[]): void {
  const sentIds = new Set(v.sent.map((m) => m.messageId));
  for (const s of v.stored)
    if (!sentIds.has(s.messageId))
      problems.push({
        kind: 'STRANGER',
        detail: `held row ${s.queueId} (${s.messageId}) matches no message sent`,
      });
  for (const c of v.copies)
    if (!c.messageId || !sentIds.has(c.messageId))
      problems.push({
        kind: 'STRANGER',
        detail: `a forwarded copy (${c.messageId ?? 'no Message-ID'}) matches no message sent`,
      });
}

function judgeMessages(v: VerdictInput, problems: Problem[]): Judged[] {
  const storedById = groupBy(v.stored, (s) => s.messageId);
  const copiesById = groupBy(v.copies, (c) => c.messageId);
  return v.sent.map((m) => {
    const j: Judged = {
      m,
      phase: phaseOf(v.faults, m.startedAt),
      stored: storedById.get(m.messageId) ?? [],
      copies: (copiesById.get(m.messageId) ?? []).sort((a, b) => a.at - b.at),
      storedVerified: 0,
      copiesVerified: 0,
    };
    judgeStored(j, problems);
    judgeCopies(j, problems);
    return j;
  });
}

/** A kill ends its victim's connections at once; a session that outlived it by more was not the victim's. */
const ENDED_BY_KILL_MS = 5_000;

export type Cause = { kind: 'kill'; fault: Fault } | { kind: 'overlap' };

/**
 * Why a message reached the mailbox twice, when the suite can show it. A kill: its only two copies are the last
 * copy of a session that the kill ended (open at the kill, closed within ENDED_BY_KILL_MS of it) and a resend on a
 * session opened after the kill. Times are when our event loop saw each event, so a copy the dying worker
 * finished may be seen a moment after the kill: the session, not the clock, says which copy was in flight. An
 * overlap: the copies came on two sessions open at the same time, two deliveries of one backlog side by side;
 * then the end of the first session is not why the second sent it.
 */
function causeOf(d: Judged, v: VerdictInput): Cause | undefined {
  const sessionOf = (c: CopyEvidence) => v.sessions.get(c.sessionId);
  const closed = (s: MailSession | undefined) => s?.closedAt ?? Number.POSITIVE_INFINITY;
  const [first, resend] = d.copies as [CopyEvidence, CopyEvidence];
  const [s1, s2] = [sessionOf(first), sessionOf(resend)];
  if (d.copies.length !== 2 || !s1 || !s2) return undefined;
  if (s1 !== s2 && s1.openedAt < closed(s2) && s2.openedAt < closed(s1)) return { kind: 'overlap' };
  const lastOnSession = v.copies.filter((c) => c.sessionId === first.sessionId).at(-1) === first;
  const fault = v.faults.find(
    (f) =>
      hitLiveProcess(f) &&
      lastOnSession &&
      s1.openedAt < f.killedAt &&
      closed(s1) >= f.killedAt &&
      closed(s1) <= f.killedAt + ENDED_BY_KILL_MS &&
      s2.openedAt > f.killedAt,
  );
  return fault && { kind: 'kill', fault };
}

export interface Duplicate {
  cause?: Cause;
  /** Only the worker's own death can come between the receiving server's 250 and our ledger write. */
  excused: boolean;
}

/** Each duplicate with its cause; a worker kill with an open session excuses one, any other cause none. */
function attributeDuplicates(judged: Judged[], v: VerdictInput): Map<Judged, Duplicate> {
  const out = new Map<Judged, Duplicate>();
  const excusedBy = new Set<Fault>();
  for (const d of judged.filter((j) => j.copies.length > 1)) {
    const cause = causeOf(d, v);
    const killer = cause?.kind === 'kill' ? cause.fault : undefined;
    const excused = killer?.excusesDuplicate === true && !excusedBy.has(killer);
    if (killer && excused) excusedBy.add(killer);
    out.set(d, { cause, excused });
  }
  return out;
}

/** Each copy's time and session, and the kills, in seconds since the load began: what a reader needs. */
function describeCopies(d: Judged, v: VerdictInput): string {
  const t0 = v.faults[0]?.phaseFrom ?? 0;
  const s = (t: number | undefined) => (t === undefined ? 'open' : `${((t - t0) / 1000).toFixed(3)} s`);
  const copies = d.copies.map((c) => {
    const session = v.sessions.get(c.sessionId);
    return `${s(c.at)} on session ${c.sessionId} (${s(session?.openedAt)} to ${s(session?.closedAt)})`;
  });
  const kills = v.faults.map((f) => `${f.kind} ${s(f.killedAt)}`);
  const more = copies.length > 3 ? ` and ${copies.length - 3} more` : '';
  return `copies at ${copies.slice(0, 3).join(', ')}${more}; kills at ${kills.join(', ')}`;
}

function whyNotExcused({ cause }: Duplicate): string {
  if (!cause) return 'no kill with an open delivery session accounts for it';
  if (cause.kind === 'overlap')
    return 'it went out on two delivery sessions open at the same time: a retried delivery ran beside an attempt still alive';
  if (cause.fault.excusesDuplicate) return 'a second duplicate for one worker kill';
  return `its session ended at ${cause.fault.kind}'s kill while the worker lived: the ledger write after the mailbox's 250 failed, and the copy went again`;
}

function judgeDuplicates(judged: Judged[], v: VerdictInput, problems: Problem[]): Map<Judged, Duplicate> {
  const duplicates = attributeDuplicates(judged, v);
  for (const [d, dup] of duplicates)
    if (!dup.excused)
      problems.push({
        kind: 'DUPLICATE',
        detail: `${d.m.messageId} (${d.m.outcome}) reached the mailbox ${d.copies.length} times; ${whyNotExcused(dup)}: ${describeCopies(d, v)}`,
      });
  return duplicates;
}

/** The run itself: each fault hit a live process and the service came back; enough mail was acknowledged. */
function judgeRun(v: VerdictInput, problems: Problem[]): void {
  for (const f of v.faults) {
    if (!hitLiveProcess(f))
      problems.push({
        kind: 'MISSED KILL',
        detail: `${f.kind}: pid ${f.pid} was ${f.aliveBeforeKill ? 'alive' : 'not alive'} before kill -9 and ended by ${f.endedBy}`,
      });
    if (f.firstAckAt === undefined || f.firstCopyAt === undefined)
      problems.push({
        kind: 'NOT RECOVERED',
        detail: `after ${f.kind}'s restart: ${f.firstAckAt === undefined ? 'no 250' : 'no forwarded copy'} within the recovery timeout`,
      });
  }
  const acked = v.sent.filter((m) => m.outcome === 'acked').length;
  if (acked < v.minAcked)
    problems.push({
      kind: 'TOO LITTLE ACKNOWLEDGED',
      detail: `${acked} messages got 250, fewer than the ${v.minAcked} a meaningful run needs (FAULTS_MIN_ACKED)`,
    });
}

export interface Verdict {
  judged: Judged[];
  duplicates: Map<Judged, Duplicate>;
  problems: Problem[];
}

export function judge(v: VerdictInput): Verdict {
  const problems: Problem[] = [];
  judgeRun(v, problems);
  const judged = judgeMessages(v, problems);
  judgeStrangers(v, problems);
  const duplicates = judgeDuplicates(judged, v, problems);
  return { judged, duplicates, problems };
}

const secs = (from: number, to: number | undefined) =>
  to === undefined ? 'never' : (Math.max(0, to - from) / 1000).toFixed(1);

/**
 * The duplicates a set of kills caused, and whether each was excused; the run's row adds those from overlapping
 * deliveries and those with no cause the suite can show.
 */
function duplicatesCell(verdict: Verdict, faults: Fault[], whole: boolean): string {
  const dups = [...verdict.duplicates.values()];
  const caused = dups.filter((d) => d.cause?.kind === 'kill' && faults.includes(d.cause.fault));
  const excused = caused.filter((d) => d.excused).length;
  const overlaps = whole ? dups.filter((d) => d.cause?.kind === 'overlap').length : 0;
  const uncaused = whole ? dups.filter((d) => !d.cause).length : 0;
  const parts = [
    excused && `${excused} excused: worker killed with its delivery session open`,
    caused.length - excused &&
      `${caused.length - excused} NOT excused: its kill ended the session, the worker lived`,
    overlaps && `${overlaps} NOT excused: two delivery sessions at once`,
    uncaused && `${uncaused} NOT excused: no cause shown`,
  ].filter(Boolean);
  return parts.length ? `${caused.length + overlaps + uncaused} (${parts.join('; ')})` : '0';
}

function tableRow(label: string, faults: Fault[], js: Judged[], verdict: Verdict, whole = false): string {
  const count = (o: SentMessage['outcome']) => js.filter((j) => j.m.outcome === o).length;
  const sum = (f: (j: Judged) => number) => js.reduce((n, j) => n + f(j), 0);
  const one = faults.length === 1 ? faults[0] : undefined;
  const hits = `${faults.filter(hitLiveProcess).length} of ${faults.length}${one?.pid ? ` (pid ${one.pid})` : ''}`;
  const back = one ? `${secs(one.readyAt, one.firstAckAt)} / ${secs(one.readyAt, one.firstCopyAt)}` : '';
  const cells = [label, hits, back, js.length, count('acked'), count('refused'), count('no-reply')];
  cells.push(
    sum((j) => j.stored.length),
    sum((j) => j.storedVerified),
  );
  cells.push(
    sum((j) => j.copies.length),
    sum((j) => j.copiesVerified),
    duplicatesCell(verdict, faults, whole),
  );
  return `| ${cells.join(' | ')} |`;
}

/**
 * One row per fault kind and one for the run. Messages count in the row of the phase they were sent in (from
 * the settle before that kill to the settle before the next); duplicates in the row of the kill that caused them.
 */
export function printTable(v: VerdictInput, verdict: Verdict): void {
  console.log(
    "\n| fault | kills that hit a live process (a drive: held data, then emptied) | back after: next 250 / next copy (s) | attempted | 250 | 4xx | no final reply | held | held bytes = sender's | copies delivered | copy bytes = sender's | duplicates (cause) |",
  );
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const kind of new Set(v.faults.map((f) => f.kind))) {
    const faults = v.faults.filter((f) => f.kind === kind);
    console.log(
      tableRow(
        kind,
        faults,
        verdict.judged.filter((j) => j.phase === kind),
        verdict,
      ),
    );
  }
  console.log(tableRow('**all**', v.faults, verdict.judged, verdict, true));
  for (const [j, dup] of verdict.duplicates)
    if (dup.excused)
      console.log(
        `Excused duplicate ${j.m.messageId}: the worker (pid ${dup.cause?.kind === 'kill' ? dup.cause.fault.pid : '?'}) died with its session open, after the mailbox's 250 and before our ledger write; the copy went again after the restart: ${describeCopies(j, v)}.`,
      );
  const heldUnacked = verdict.judged.filter((j) => j.m.outcome !== 'acked' && j.stored.length > 0).length;
  console.log(
    `Held without a 250 at the sender: ${heldUnacked} (committed, then the reply was lost or late); judged like the rest: held once, intact, delivered once.`,
  );
}

/** Prints the problems by kind, a few examples each; 0 when there are none. */
export function report(verdict: Verdict): number {
  const { problems } = verdict;
  if (problems.length === 0) {
    console.log(
      "faults: PASS: every acknowledged message is held with the sender's bytes and forwarded with them; nothing refused or unanswered is half-stored or doubled; every duplicate has its cause; every kill hit a live process.",
    );
    return 0;
  }
  const byKind = groupBy(problems, (p) => p.kind);
  console.error(`\nfaults: FAIL: ${[...byKind].map(([k, ps]) => `${ps.length} ${k}`).join(', ')}`);
  for (const [kind, ps] of byKind) {
    console.error(`\n${kind} (${ps.length}):`);
    for (const p of ps.slice(0, 10)) console.error(`  ${p.detail}`);
    if (ps.length > 10) console.error(`  ... and ${ps.length - 10} more`);
  }
  return 1;
}
