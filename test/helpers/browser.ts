import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { type Browser, chromium } from 'playwright-core';
import { testTmp } from './stack';

// Debian's chromium, driven by playwright-core: no browser is ever downloaded. Background networking and component
// updates are off, since this machine's closed network refuses them, and each would be a stray connection the
// browser makes on its own. --no-sandbox: the tests run as root, where chromium refuses its own sandbox.

export const CHROMIUM = '/usr/bin/chromium';

export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM))
    throw new Error(
      `${CHROMIUM} is missing: apt-get install -y --no-install-recommends chromium (npm run setup does)`,
    );
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update'],
  });
}

/** A folder for downloads the test reads back; removed with the test stack's temporary folder. */
export function downloadsDir(): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(testTmp(), 'downloads-'));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
