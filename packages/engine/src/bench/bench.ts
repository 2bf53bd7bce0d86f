export async function runBench(_o: { out?: string; steps?: number; quick?: boolean }): Promise<void> { throw new Error('bench: not written yet'); }
