/** `node-kvm run`: placeholder until the VMM lands. */
export async function runCommand(_args: string[]): Promise<number> {
  process.stderr.write('node-kvm run: not available yet\n');
  return 2;
}
