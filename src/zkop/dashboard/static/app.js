// zkop dashboard: renders the snapshots the server pushes over server-sent events.
// Plain DOM, no framework, no build step; every value goes in as text, never as markup.
"use strict";
(() => {
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  if (token) history.replaceState(null, "", location.pathname); // a cookie carries it from now on
  const query = token ? "?token=" + encodeURIComponent(token) : "";
  const state = { snapshots: 0, version: 0 };
  window.zkopDashboard = state;
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  function svg(tag, attrs, ...children) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    setAttrs(node, attrs);
    for (const child of children.flat()) if (child) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    return node;
  }
  function setAttrs(node, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) node.setAttribute(k, String(v));
  }
  const dash = (v) => (v === null || v === undefined || v === "" ? "–" : v);
  function time(iso) {
    if (!iso) return "–";
    const d = new Date(iso);
    return isNaN(d) ? iso : d.toLocaleTimeString([], { hour12: false });
  }
  function ago(iso, nowMs) {
    const d = Date.parse(iso);
    if (isNaN(d)) return "";
    let s = Math.max(0, Math.round((nowMs - d) / 1000));
    if (s < 90) return s + "s ago";
    if (s < 5400) return Math.round(s / 60) + "m ago";
    return Math.round(s / 3600) + "h ago";
  }
  const dot = (on) => el("span", { class: on ? "dot on" : "dot", title: on ? "ready" : "not ready" });
  function table(headers, rows) {
    return el("table", {}, el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))), el("tbody", {}, rows));
  }
  function timeline(events, limit) {
    if (!events.length) return el("p", { class: "muted" }, "no events");
    return el("ul", { class: "timeline" },
      events.slice(-limit).reverse().map((e) =>
        el("li", { "data-reason": e.reason },
          el("span", { class: "t" }, time(e.lastTimestamp)),
          el("span", { class: e.type }, e.reason), " ", e.message, e.count > 1 ? ` (×${e.count})` : "")));
  }
  function nowLine(now) {
    return el("div", { class: now.busy ? "now" : "now idle", "data-busy": now.busy },
      el("b", {}, now.busy ? "now: " : "idle: "), now.message || now.action || "–");
  }

  // ---- the control plane ----
  function renderControlPlane(cp, nowMs) {
    const op = cp.operator;
    const cards = [];
    if (op) {
      cards.push(el("div", { class: "card", id: "operator", "data-leader": op.leader || "", "data-epoch": op.epoch ?? "" },
        el("div", { class: "card-head" }, el("h3", {}, "Operator"), el("span", { class: "muted" }, op.manager)),
        el("div", { class: "kv" },
          el("span", {}, "leader ", el("b", {}, dash(op.leader))),
          el("span", {}, "epoch ", el("b", {}, dash(op.epoch))),
          el("span", {}, "since ", el("b", {}, time(op.since)), op.since ? ` (${ago(op.since, nowMs)})` : ""),
          el("span", {}, "replicas ", el("b", {}, op.replicas))),
        table(["replica", ""], op.candidates.map((c, i) =>
          el("tr", { "data-replica": c }, el("td", {}, c), el("td", {}, c === op.leader ? el("span", { class: "pill ok" }, "leader") : `in line #${i}`))))));
    }
    const local = cp.local;
    if (local) {
      const serving = local.members.filter((m) => m.ready).length;
      cards.push(el("div", { class: "card", id: "local-cp" },
        el("div", { class: "card-head" }, el("h3", {}, "Control-plane ensemble"),
          el("span", { class: serving * 2 > local.members.length ? "pill ok" : "pill bad" }, `${serving}/${local.members.length} serving`),
          el("span", { class: "muted" }, `desired ${dash(local.desiredMembers)}`)),
        el("div", { class: "kv" },
          el("span", {}, "keeper ", el("b", {}, local.keeper ? `${local.keeper.identity} (pid ${local.keeper.pid})` : "none running"))),
        table(["id", "role", "ready", "zxid", "restarts", "endpoint"], local.members.map((m) =>
          el("tr", { "data-member": m.id, "data-ready": m.ready },
            el("td", {}, m.id), el("td", { class: "role-" + m.role }, dash(m.role)), el("td", {}, dot(m.ready)),
            el("td", { class: "num" }, dash(m.zxid)), el("td", { class: "num" }, m.restarts), el("td", {}, dash(m.endpoint))))),
        timeline(local.events, 6)));
    }
    if (!cards.length) cards.push(el("p", { class: "muted" }, "no control-plane data yet"));
    $("cp").replaceChildren(...cards);
  }

  // ---- ZooKeeper clusters ----
  function renderClusters(clusters) {
    if (!clusters.length) return $("clusters").replaceChildren(el("p", { class: "muted" }, "no ZookeeperClusters"));
    $("clusters").replaceChildren(...clusters.map((c) => {
      const ok = c.phase === "Running" ? "ok" : c.phase === "Degraded" || c.phase === "Failed" ? "bad" : "warn";
      return el("div", { class: "card", "data-cluster": c.key, "data-phase": c.phase, "data-ready-count": c.ready, "data-members": c.members.length, "data-desired": c.desired },
        el("div", { class: "card-head" }, el("h3", {}, c.key), el("span", { class: "pill " + ok }, c.phase),
          el("span", { class: "muted" }, `${c.ready}/${c.desired} ready`), c.paused ? el("span", { class: "pill warn" }, "paused") : null),
        el("div", { class: "kv" },
          el("span", {}, "leader ", el("b", {}, c.leader ? "#" + c.leader : "–")),
          el("span", {}, "config ", el("b", { class: "config-version" }, dash(c.configVersion))),
          el("span", {}, "generation ", el("b", {}, `${dash(c.observedGeneration)}/${dash(c.generation)}`))),
        nowLine(c.now),
        table(["id", "role", "ready", "zxid", "latency", "queued", "restarts", "endpoint"], c.members.map((m) =>
          el("tr", { "data-member": m.id, "data-ready": m.ready, "data-role": m.role, "data-restarts": m.restarts },
            el("td", {}, m.id), el("td", { class: "role-" + m.role }, m.role), el("td", {}, dot(m.ready)),
            el("td", { class: "num" }, dash(m.zxid)), el("td", { class: "num" }, m.latencyMs === null ? "–" : m.latencyMs.toFixed(1) + " ms"),
            el("td", { class: "num" }, dash(m.outstanding)), el("td", { class: "num restarts" }, m.restarts), el("td", {}, dash(m.endpoint))))),
        timeline(c.events, 30));
    }));
  }

  // ---- applications ----
  // A small time plot: the SVG stretches to its box (strokes keep their width); labels are HTML.
  function chart(opts) {
    const W = 600, H = 120;
    const { t0, t1, series, hlines = [], marks = [] } = opts;
    let ymax = 1;
    for (const s of series) for (const [, v] of s.points) if (v !== null && v > ymax) ymax = v;
    for (const h of hlines) if (h.value > ymax) ymax = h.value;
    ymax *= 1.15;
    const x = (t) => ((t - t0) / Math.max(1, t1 - t0)) * W;
    const y = (v) => H - (v / ymax) * H;
    const line = (cls, x1, y1, x2, y2, title) =>
      svg("line", { class: cls, x1, y1, x2, y2, "vector-effect": "non-scaling-stroke" }, title ? svg("title", {}, title) : null);
    const parts = [];
    for (const h of hlines) parts.push(line(h.cls, 0, y(h.value), W, y(h.value), h.label));
    for (const m of marks) if (m.t >= t0 && m.t <= t1) parts.push(line("scaled", x(m.t), 0, x(m.t), H, m.title));
    for (const s of series) {
      let pts = [];
      const flush = () => {
        if (pts.length) parts.push(svg("polyline", { class: s.cls, points: pts.join(" "), "vector-effect": "non-scaling-stroke" }));
        pts = [];
      };
      s.points.forEach(([t, v], i) => {
        if (v === null || v === undefined) return flush();
        pts.push(`${x(t).toFixed(1)},${y(v).toFixed(1)}`);
        if (s.step) {
          const next = i + 1 < s.points.length ? s.points[i + 1][0] : t1;
          pts.push(`${x(next).toFixed(1)},${y(v).toFixed(1)}`);
        }
      });
      flush();
    }
    const top = ymax >= 10 ? Math.round(ymax) : +ymax.toFixed(1);
    const labels = marks.filter((m) => m.label && m.t >= t0 && m.t <= t1).map((m) => {
      const label = el("span", { class: "mark", title: m.title }, m.label);
      label.style.left = ((100 * x(m.t)) / W).toFixed(2) + "%";
      return label;
    });
    return el("div", { class: "chart" },
      el("span", { class: "ymax" }, top), el("span", { class: "y0" }, "0"), ...labels,
      svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img" }, parts),
      el("span", { class: "x0" }, "-" + Math.max(1, Math.round((t1 - t0) / 60000)) + " min"), el("span", { class: "x1" }, "now"));
  }
  function renderApps(apps, nowMs) {
    if (!apps.length) return $("apps").replaceChildren(el("p", { class: "muted" }, "no Applications"));
    $("apps").replaceChildren(...apps.map((a) => {
      const h = a.history;
      const t1 = nowMs, t0 = Math.min(h.length ? h[0][0] : t1, t1 - 60000);
      const marks = a.scaled.map((s) => ({ t: Date.parse(s.at), title: s.message, label: s.to === null ? "" : `${s.from}→${s.to}` }));
      const targets = a.autoscaling ? a.autoscaling.targets : [];
      const ok = a.ready >= a.desired && a.desired > 0 ? "ok" : a.ready > 0 ? "warn" : "bad";
      return el("div", { class: "card", "data-app": a.key, "data-ready-count": a.ready, "data-desired": a.desired },
        el("div", { class: "card-head" }, el("h3", {}, a.key), el("span", { class: "pill " + ok }, `${a.ready}/${a.desired} ready`),
          a.autoscaling ? el("span", { class: "muted" }, `autoscaling ${a.autoscaling.min}–${a.autoscaling.max}`) : null),
        el("div", { class: "kv" },
          el("span", {}, "revision ", el("b", {}, dash(a.revision))),
          el("span", {}, "updated ", el("b", {}, `${a.updated}/${a.replicas}`)),
          el("span", {}, "load ", el("b", {}, a.currentMetric === null ? "–" : +a.currentMetric.toFixed(2)),
            targets.length ? ` / target ${targets.map((t) => t.label).join(", ")}` : ""),
          el("span", {}, "last scaled ", el("b", {}, time(a.lastScaleTime)))),
        nowLine(a.now),
        table(["instance", "phase", "ready", "restarts", "revision", "endpoint"], a.instances.map((i) =>
          el("tr", { "data-instance": i.name, "data-ready": i.ready },
            el("td", {}, i.name), el("td", { title: i.message || "" }, dash(i.phase)), el("td", {}, dot(i.ready)),
            el("td", { class: "num" }, i.restarts),
            el("td", {}, i.revision ? i.revision + (i.current === false ? " (old)" : "") : "–"),
            el("td", { class: "endpoint" }, i.endpoint || (i.port ? ":" + i.port : "–"))))),
        el("div", { class: "plots" },
          el("div", { class: "plot" }, el("div", { class: "title" }, "load against target"),
            chart({ t0, t1, series: [{ cls: "load", points: h.map((s) => [s[0], s[1]]) }],
              hlines: targets.length === 1 ? [{ cls: "target", value: targets[0].value, label: "target " + targets[0].label }] : [] }),
            el("div", { class: "legend" }, el("i", { class: "l-load" }), "load", targets.length === 1 ? [el("i", { class: "l-target" }), "target"] : null)),
          el("div", { class: "plot" }, el("div", { class: "title" }, "replicas and autoscaler decisions"),
            chart({ t0, t1, marks, series: [
              { cls: "replicas", step: true, points: h.map((s) => [s[0], s[2]]) },
              { cls: "ready", step: true, points: h.map((s) => [s[0], s[3]]) },
              { cls: "desired", step: true, points: h.map((s) => [s[0], s[4]]) }] }),
            el("div", { class: "legend" }, el("i", { class: "l-replicas" }), "instances", el("i", { class: "l-ready" }), "ready",
              el("i", { class: "l-desired" }), "desired",
              el("i", { class: "l-scaled" }), `scaled (${a.scaled.length})`))),
        timeline(a.events, 30));
    }));
  }

  // ---- events everywhere ----
  function syncOptions(select, values) {
    const keep = select.value;
    select.replaceChildren(el("option", { value: "" }, "all"), ...values.map((v) => el("option", { value: v }, v)));
    select.value = values.includes(keep) ? keep : "";
  }
  function renderEvents(events) {
    syncOptions($("f-ns"), events.namespaces);
    syncOptions($("f-kind"), events.kinds);
    const ns = $("f-ns").value, kind = $("f-kind").value, warn = $("f-warn").checked;
    const shown = events.items.filter((e) => (!ns || e.namespace === ns) && (!kind || e.kind === kind) && (!warn || e.type === "Warning"));
    $("f-count").textContent = `${shown.length} of ${events.items.length}`;
    $("events").tBodies[0].replaceChildren(...shown.map((e) =>
      el("tr", { "data-kind": e.kind, "data-namespace": e.namespace, "data-reason": e.reason },
        el("td", { class: "num", title: e.lastTimestamp }, time(e.lastTimestamp)), el("td", {}, e.namespace),
        el("td", {}, `${e.kind}/${e.name}`), el("td", { class: e.type }, e.type), el("td", {}, e.reason),
        el("td", {}, e.message), el("td", { class: "num" }, e.count))));
  }

  function render(data) {
    const nowMs = Date.parse(data.generatedAt) || Date.now();
    state.version = data.version;
    document.body.dataset.version = data.version;
    const conn = data.connection;
    $("conn").dataset.state = conn.state;
    $("conn").textContent = conn.state === "CONNECTED" ? "live" : conn.state.toLowerCase();
    $("hosts").textContent = `${conn.hosts}${conn.root}`;
    $("updated").textContent = "updated " + time(data.generatedAt);
    $("errors").hidden = !data.errors.length;
    $("errors").replaceChildren(...data.errors.map((e) => el("div", {}, e)));
    renderControlPlane(data.controlPlane, nowMs);
    renderClusters(data.clusters);
    renderApps(data.applications, nowMs);
    renderEvents(data.events);
  }

  let last = null;
  for (const id of ["f-ns", "f-kind", "f-warn"]) $(id).addEventListener("change", () => last && renderEvents(last.events));

  function connect() {
    const source = new EventSource("events" + query);
    source.addEventListener("snapshot", (message) => {
      last = JSON.parse(message.data);
      state.snapshots += 1;
      render(last);
    });
    source.onerror = () => {
      if (source.readyState !== EventSource.CLOSED) {
        $("conn").dataset.state = "connecting";
        $("conn").textContent = "reconnecting…";
        return;
      }
      // Refused (a missing or wrong token) or the server is gone: say why, try again later.
      $("conn").dataset.state = "closed";
      $("conn").textContent = "disconnected";
      fetch("api/snapshot" + query).then(async (r) => {
        if (r.status === 401 || r.status === 403) {
          $("errors").hidden = false;
          $("errors").replaceChildren(el("div", {}, await r.text()));
        }
      }, () => {});
      setTimeout(connect, 3000);
    };
  }
  connect();
})();
