// CSV built in the browser from what a page shows: RFC 4180 (CRLF lines, fields with a
// comma, quote or line break quoted, quotes doubled), UTF-8 with a byte-order mark so that
// spreadsheets read the accents, and cells a spreadsheet would run as a formula (= + - @,
// or a leading tab or carriage return) prefixed with ' (OWASP's "CSV injection").
const FORMULA_START = /^[=+\-@\t\r]/;

export function csvCell(value: string): string {
  const safe = FORMULA_START.test(value) ? `'${value}` : value;
  return /[",\r\n]/.test(safe) ? `"${safe.replaceAll("\"", "\"\"")}"` : safe;
}

/** The text of a CSV file (with its BOM) holding `lines`, the header first. */
export function csvOf(lines: readonly (readonly string[])[]): string {
  return "\uFEFF" + lines.map((cells) => cells.map(csvCell).join(",")).join("\r\n") + "\r\n";
}

/** Offers `text` as a download named `name` (a Blob behind a temporary link). */
export function downloadCsv(name: string, text: string): void {
  const url = URL.createObjectURL(new Blob([text], { type: "text/csv;charset=utf-8" }));
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
