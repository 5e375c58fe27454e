// Bounces as receiving MTAs write them, for the tests of bounce handling.

/** A DSN as Postfix writes it: human part, delivery-status part, returned headers. */
export function dsn(opts: {
  action: string;
  status: string;
  diagnostic?: string;
  returned?: string;
}): string {
  return [
    'From: MAILER-DAEMON@mx.gmail.example (Mail Delivery System)',
    'Subject: Undelivered Mail Returned to Sender',
    'Auto-Submitted: auto-replied',
    'MIME-Version: 1.0',
    'Content-Type: multipart/report; report-type=delivery-status; boundary="B1"',
    '',
    '--B1',
    'Content-Type: text/plain; charset=us-ascii',
    '',
    'I am sorry to have to inform you that your message could not be delivered.',
    'Status: 2.0.0 (a line in the human part that must not be read as the status)',
    '',
    '--B1',
    'Content-Description: Delivery report',
    'Content-Type: message/delivery-status',
    '',
    'Reporting-MTA: dns; mx.gmail.example',
    'Arrival-Date: Sun,  1 Mar 2026 12:00:00 +0000',
    '',
    'Final-Recipient: rfc822; it@gmail.example',
    'Original-Recipient: rfc822;it@gmail.example',
    `Action: ${opts.action}`,
    `Status: ${opts.status}`,
    ...(opts.diagnostic ? [`Diagnostic-Code: ${opts.diagnostic}`] : []),
    '',
    '--B1',
    'Content-Type: text/rfc822-headers',
    '',
    opts.returned ?? 'Subject: the original\r\nStatus: RO',
    '',
    '--B1--',
    '',
  ].join('\r\n');
}
