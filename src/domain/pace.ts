import { z } from 'zod';

// How fast a delivery may go to one destination. Pure: the workflow, the API and the CLI read the same rates.
//
// A rate is a count per window ("60/min"). Deliveries are paced smoothly at the rate's average, one message every
// window/count: paced that way, no window of any length ever holds more than the count, so one number also keeps
// Gmail's hourly and daily caps (3,600/h and 86,400/day are the same average as 60/min) without a burst that a
// receiver answers with 421 4.7.28 and, pushed on, with a day of bounces.

const RATE = /^(\d{1,6})\/(s|min|h|d)$/;
const WINDOW_MS = { s: 1_000, min: 60_000, h: 3_600_000, d: 86_400_000 } as const;

export const rateSchema = z
  .string()
  .regex(RATE, 'expected a count per window, e.g. "60/min", "5/s", "3600/h" or "86400/d"')
  .refine((r) => Number(RATE.exec(r)?.[1]) > 0, 'a rate must allow at least one message')
  .meta({ description: 'Messages per window: s, min, h or d, e.g. "60/min" or "5/s".' });
export type Rate = z.infer<typeof rateSchema>;

/** Milliseconds between two sends at this rate. */
export function rateIntervalMs(rate: Rate): number {
  const m = RATE.exec(rate);
  if (!m) throw new Error(`not a rate: ${rate}`);
  return WINDOW_MS[m[2] as keyof typeof WINDOW_MS] / Number(m[1]);
}

/** The rate as messages per minute, for people planning with it (fractions kept to two places). */
export const perMinute = (intervalMs: number) => Math.round((60_000 / intervalMs) * 100) / 100;

/** Gmail's published receiving limits per mailbox, as one smooth rate (support.google.com/a/answer/1366776). */
export const MAILBOX_RATE_DEFAULT: Rate = '60/min';

/**
 * How a destination answered "too fast": 450 4.2.1 is about one mailbox, 421 4.7.28 and 421 4.7.0 about our
 * addresses at that receiving domain. Either slows that destination down; neither is a failure of the message.
 */
export type SlowDown = 'mailbox' | 'domain';
export function slowDownOf(replyCode: number | null, reply: string): SlowDown | null {
  if (replyCode === 450 && /\b4\.2\.1\b/.test(reply)) return 'mailbox';
  if (replyCode === 421 && /\b4\.7\.(28|0)\b/.test(reply)) return 'domain';
  return null;
}

/** Each slow-down halves the destination's pace, down to 1/64 of it; an hour without one restores it. */
export const SLOWDOWN_FLOOR = 1 / 64;
export const SLOWDOWN_RECOVERY_MS = 3_600_000;
