// The dashboard's shell: sign-in with an API key, the navigation, and a hash router (#/jobs, #/jobs/<id>,
// #/new, #/files, #/models, #/workers) so that the API serves one static page.
import { html, render } from 'htm/preact';
import { useEffect, useState } from 'preact/hooks';
import 'uplot/dist/uPlot.min.css';
import './style.css';
import { api, apiKey, signIn, signOut } from './api.js';
import { FilesPage } from './pages/files.js';
import { JobPage } from './pages/job.js';
import { JobsPage } from './pages/jobs.js';
import { ModelsPage } from './pages/models.js';
import { NewJobPage } from './pages/new-job.js';
import { WorkersPage } from './pages/workers.js';

const NAV = [
  ['#/jobs', 'Jobs'],
  ['#/new', 'New job'],
  ['#/files', 'Files'],
  ['#/models', 'Models'],
  ['#/workers', 'Workers'],
];

function useHash() {
  const [hash, setHash] = useState(location.hash || '#/jobs');
  useEffect(() => {
    const on = () => setHash(location.hash || '#/jobs');
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  return hash;
}

function SignIn() {
  const [key, setKey] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await api('/v1/jobs?limit=1', { key: key.trim() }); // any authenticated read checks the key
      signIn(key.trim());
    } catch (err) {
      setError(err.message);
    } finally {
      setBusy(false);
    }
  };
  return html`<main class="signin">
    <h1>edgetune</h1>
    <p>Sign in with an API key. It is kept for this browser tab only and sent with each request.</p>
    <form onSubmit=${submit}>
      <label>API key <input name="api_key" type="password" autocomplete="off" value=${key} onInput=${(e) => setKey(e.currentTarget.value)} required /></label>
      <button type="submit" disabled=${busy}>Sign in</button>
    </form>
    ${error && html`<p class="error" role="alert">${error}</p>`}
  </main>`;
}

function page(hash) {
  const [, route, id] = hash.split('/');
  if (route === 'jobs' && id) return html`<${JobPage} id=${decodeURIComponent(id)} />`;
  if (route === 'new') return html`<${NewJobPage} />`;
  if (route === 'files') return html`<${FilesPage} />`;
  if (route === 'models') return html`<${ModelsPage} />`;
  if (route === 'workers') return html`<${WorkersPage} />`;
  return html`<${JobsPage} />`;
}

function App() {
  const [key, setKeyState] = useState(apiKey());
  const hash = useHash();
  useEffect(() => {
    const on = () => setKeyState(apiKey());
    window.addEventListener('edgetune:auth', on);
    return () => window.removeEventListener('edgetune:auth', on);
  }, []);
  if (!key) return html`<${SignIn} />`;
  const current = `#/${hash.split('/')[1]}`;
  return html`<header>
      <a class="brand" href="#/jobs">edgetune</a>
      <nav>
        ${NAV.map(([href, label]) => html`<a href=${href} class=${current === href ? 'active' : ''}>${label}</a>`)}
      </nav>
      <button class="link" onClick=${signOut}>Sign out</button>
    </header>
    <main>${page(hash)}</main>`;
}

render(html`<${App} />`, document.getElementById('app'));
