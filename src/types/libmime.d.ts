// The two methods of libmime (nodemailer's MIME library, which mailparser uses) that the ingest calls. The module
// exports an instance; its methods need it as `this`, so call them on the default export.
declare module 'libmime' {
  const libmime: {
    /** Unfolds a header block into lower-cased names and their raw values, in order. */
    decodeHeaders(headers: string): Record<string, string[]>;
    /** Decodes RFC 2047 encoded words ("=?UTF-8?Q?...?="). */
    decodeWords(value: string): string;
  };
  export default libmime;
}
