// CSV built in the browser from what a page shows: RFC 4180 (CRLF lines, fields with a
// comma, quote or line break quoted, quotes doubled), UTF-8 with a byte-order mark so that
// spreadsheets read the accents, and every cell made inert for spreadsheets by the export
// service's rule (`neutralize` below, OWASP's "CSV injection").

// The export service's rule, mirrored exactly: services/export_svc/domain/csv_rows.py
// (FORMULA_PREFIXES, _skipped_before_formula, neutralize). Change both together.
//
// A spreadsheet runs a cell as a formula (or DDE call) when it starts with one of these;
// Excel and LibreOffice also accept the fullwidth forms of = + - @. A tab or carriage
// return first is how attackers slip past naive checks, so those count too.
const FORMULA_PREFIXES: ReadonlySet<string> = new Set([
  "=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20",
]);

// Python's str.isspace(), character for character (Unicode 14, CPython 3.11): JavaScript's
// \s differs (it lacks U+001C..U+001F and U+0085, and has U+FEFF, which is Cf below anyway).
const PYTHON_SPACE = /^[\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]$/u;
// unicodedata.category(ch) == "Cf": invisible format characters (zero-width space, BOM,
// bidi marks). Checked code point by code point against CPython 3.11: the browser's newer
// Unicode tables add only U+13439..U+1343F (Egyptian hieroglyph format controls, Unicode 15),
// so the console may quote a cell the export would not, never the other way round.
const FORMAT_CHARACTER = /^\p{Cf}$/u;

/** Characters an importer may drop before it looks for a formula: spaces (LibreOffice's
 * "trim spaces", Google Sheets), invisible format characters and double quotes. */
function skippedBeforeFormula(ch: string): boolean {
  return PYTHON_SPACE.test(ch) || ch === "\"" || ch === "\uff02" || FORMAT_CHARACTER.test(ch);
}

/** `cell` made inert for spreadsheets: a cell whose first character, or first one after
 * leading spaces, invisible characters and double quotes, is a formula character gets a
 * single quote in front (`=1+2` -> `'=1+2`, ` =1` -> `' =1`), which spreadsheets show as
 * text. Any other cell is returned unchanged. */
export function neutralize(cell: string): string {
  // Code points, as Python iterates a str (a surrogate pair is one character).
  const chars = [...cell];
  if (chars.length > 0 && FORMULA_PREFIXES.has(chars[0])) {
    return `'${cell}`;
  }
  const first = chars.find((ch) => !skippedBeforeFormula(ch)) ?? "";
  if (first !== "" && FORMULA_PREFIXES.has(first)) {
    return `'${cell}`;
  }
  return cell;
}

export function csvCell(value: string): string {
  const safe = neutralize(value);
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
