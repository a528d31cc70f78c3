// A small line chart on <canvas>: train loss and val loss against step (no chart library: offline, no build).
const COLORS = { train_loss: "#2f6fde", val_loss: "#d9480f" };
const PALETTE = ["#2f6fde", "#d9480f", "#1f8a4c", "#9c36b5", "#b7791f", "#0b7285", "#c2255c", "#495057"];

export function colorFor(key, i) { return COLORS[key] || PALETTE[i % PALETTE.length]; }

// series: [{label, color, points: [[x, y], ...], dashed}]
export function drawChart(canvas, series, { xLabel = "step", yLabel = "loss" } = {}) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 800, hgt = canvas.clientHeight || 320;
  canvas.width = w * dpr; canvas.height = hgt * dpr;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, hgt);
  const pts = series.flatMap((s) => s.points);
  ctx.font = "12px system-ui, sans-serif";
  ctx.fillStyle = "#687083";
  if (!pts.length) { ctx.fillText("no metrics yet", 20, 30); return; }
  const pad = { l: 56, r: 12, t: 12, b: 32 };
  let [x0, x1] = [Math.min(...pts.map((p) => p[0])), Math.max(...pts.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...pts.map((p) => p[1])), Math.max(...pts.map((p) => p[1]))];
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  if (y0 === y1) { y0 -= 0.5; y1 += 0.5; }
  const yPad = (y1 - y0) * 0.05; y0 -= yPad; y1 += yPad;
  const X = (x) => pad.l + ((x - x0) / (x1 - x0)) * (w - pad.l - pad.r);
  const Y = (y) => hgt - pad.b - ((y - y0) / (y1 - y0)) * (hgt - pad.t - pad.b);
  ctx.strokeStyle = "#dde1e8"; ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = y0 + ((y1 - y0) * i) / 4;
    ctx.beginPath(); ctx.moveTo(pad.l, Y(y)); ctx.lineTo(w - pad.r, Y(y)); ctx.stroke();
    ctx.fillText(y.toPrecision(3), 4, Y(y) + 4);
  }
  for (let i = 0; i <= 4; i++) {
    const x = x0 + ((x1 - x0) * i) / 4;
    ctx.fillText(String(Math.round(x)), X(x) - 8, hgt - pad.b + 16);
  }
  ctx.fillText(xLabel, w - pad.r - 30, hgt - 4);
  ctx.fillText(yLabel, 4, pad.t - 2 > 0 ? pad.t - 2 : 10);
  for (const s of series) {
    if (!s.points.length) continue;
    ctx.strokeStyle = s.color; ctx.fillStyle = s.color; ctx.lineWidth = 2;
    ctx.setLineDash(s.dashed ? [6, 4] : []);
    ctx.beginPath();
    s.points.forEach(([x, y], i) => (i ? ctx.lineTo(X(x), Y(y)) : ctx.moveTo(X(x), Y(y))));
    ctx.stroke();
    if (s.points.length < 40) s.points.forEach(([x, y]) => { ctx.beginPath(); ctx.arc(X(x), Y(y), 2.5, 0, 7); ctx.fill(); });
  }
  ctx.setLineDash([]);
}
