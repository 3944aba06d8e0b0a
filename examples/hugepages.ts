/**
 * A guest running from hugepage-backed memory: the long-mode payload with guest RAM on 2 MiB pages (hugetlb when
 * the pool has room, else THP). Reserve a pool first for hugetlb: echo 16 > /proc/sys/vm/nr_hugepages
 * Run: node dist/examples/hugepages.js [auto|hugetlb|thp|none]
 */
import { isMain } from './lib/main.js';
import { helloLongMode } from './hello-long-mode.js';

if (isMain(import.meta.url)) {
  const mode = (process.argv[2] ?? 'auto') as 'auto' | 'hugetlb' | 'thp' | 'none';
  const r = helloLongMode({ hugepages: mode });
  process.stdout.write(r.output);
  console.log(`guest RAM backing: ${r.backing}; stop: ${r.stop.reason}; marker 0x${r.marker.toString(16)}`);
}
