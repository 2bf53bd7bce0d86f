// Data hooks shared by the pages.
import { useCallback, useEffect, useState } from 'preact/hooks';
import { api } from './api.js';

/**
 * GETs `path` now and every `everyMs` (0: once); returns {data, error, reload}. Keeps the last good answer
 * while a refresh fails.
 */
export function usePoll(path, everyMs = 0) {
  const [state, setState] = useState({ data: null, error: null });
  const reload = useCallback(
    () =>
      api(path).then(
        (data) => setState({ data, error: null }),
        (error) => setState((s) => ({ data: s.data, error })),
      ),
    [path],
  );
  useEffect(() => {
    reload();
    if (!everyMs) return;
    const t = setInterval(reload, everyMs);
    return () => clearInterval(t);
  }, [reload, everyMs]);
  return { ...state, reload };
}
