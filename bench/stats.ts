/**
 * Result rows, summary statistics and the printed table. Every measured quantity is a list of samples (one per
 * chunk); a ratio is computed per chunk (JS and C measured moments apart) and then summarised, never as a ratio
 * of two medians.
 */

export interface Summary {
  n: number;
  median: number;
  min: number;
  max: number;
}

export function summarize(samples: readonly number[]): Summary {
  const s = samples.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return { n: 0, median: NaN, min: NaN, max: NaN };
  const mid = s.length >> 1;
  const median = s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  return { n: s.length, median, min: s[0], max: s[s.length - 1] };
}

export interface Target {
  /** What the target applies to: the ratio column or the value itself. */
  on: 'ratio' | 'value';
  op: '>=' | '<=';
  value: number;
  /** How the target is printed, e.g. "≥ 0.97× C". */
  label: string;
}

export interface Row {
  /** Section heading this row belongs to. */
  section: string;
  quantity: string;
  unit: string;
  value: Summary;
  /** The baseline this row's ratio is taken against ("C, same chunk"). */
  baseline?: string;
  ratio?: Summary;
  target?: Target;
  /** undefined when there is no target or nothing was measured. */
  met?: boolean;
  /** Why a row was not measured, or a short remark. */
  note?: string;
  /** The raw samples behind value and ratio (JSON only). */
  samples?: number[];
  ratioSamples?: number[];
}

/** A measured row: summaries from samples, then judged against its target. */
export function row(
  r: Omit<Row, 'value' | 'ratio' | 'samples' | 'ratioSamples'> & {
    samples: number[];
    ratioSamples?: number[];
  },
): Row {
  return judge({
    ...r,
    value: summarize(r.samples),
    ratio: r.ratioSamples !== undefined ? summarize(r.ratioSamples) : undefined,
  });
}

export function judge(row: Row): Row {
  if (row.target === undefined) return row;
  const subject = row.target.on === 'ratio' ? row.ratio : row.value;
  if (subject === undefined || subject.n === 0) return row;
  const x = subject.median;
  return { ...row, met: row.target.op === '>=' ? x >= row.target.value : x <= row.target.value };
}

/** A row that could not be measured: it stays in the table and the JSON with the reason. */
export function notMeasured(
  section: string,
  quantity: string,
  unit: string,
  why: string,
  target?: Target,
): Row {
  return { section, quantity, unit, value: summarize([]), target, note: `not measured: ${why}` };
}

export function fmt(x: number): string {
  if (!Number.isFinite(x)) return '–';
  const a = Math.abs(x);
  if (a >= 1e6) return x.toExponential(3);
  if (a >= 1000) return x.toFixed(0);
  if (a >= 100) return x.toFixed(1);
  if (a >= 10) return x.toFixed(2);
  if (a >= 1) return x.toFixed(3);
  return x.toPrecision(3);
}

function ratioText(r: Summary | undefined): string {
  if (r === undefined || r.n === 0) return '';
  return `${fmt(r.median)}× (${fmt(r.min)}–${fmt(r.max)})`;
}

/** A Markdown table (so docs/performance.md can carry it verbatim), grouped by section. */
export function formatTable(rows: readonly Row[]): string {
  const header = [
    'quantity',
    'n',
    'median',
    'min',
    'max',
    'unit',
    'ratio vs baseline (min–max)',
    'baseline',
    'target',
    'met?',
  ];
  const lines: string[] = [];
  let section = '';
  const emit = (cells: string[]) => lines.push(`| ${cells.join(' | ')} |`);
  for (const r of rows) {
    if (r.section !== section) {
      section = r.section;
      if (lines.length > 0) lines.push('');
      lines.push(`**${section}**`, '');
      emit(header);
      emit(header.map((_, i) => (i >= 1 && i <= 4 ? '---:' : '---')));
    }
    const met = r.met === undefined ? '' : r.met ? 'yes' : '**no**';
    const measured = r.value.n > 0;
    emit([
      r.quantity + (r.note ? ` — ${r.note}` : ''),
      measured ? String(r.value.n) : '0',
      fmt(r.value.median),
      fmt(r.value.min),
      fmt(r.value.max),
      r.unit,
      ratioText(r.ratio),
      r.baseline ?? '',
      r.target?.label ?? '',
      met,
    ]);
  }
  return lines.join('\n');
}
