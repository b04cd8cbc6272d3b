/* afmask report: a small zoomable viewer of the spectrogram and the importance map over it.
 *
 * Data (a JSON script inside each .afmask-viewer element): K bins x T frames, frame_s seconds per frame,
 * bin_hz Hz per bin, "spec" the level in dB quantised to 0..255 over [db_lo, db_hi], "imp" the importance
 * as a rank percentile quantised to 0..255 (255 = most important = smallest noise scale m), both base64,
 * row-major (index k*T + t), and the colour tables (256 x RGB, base64). Words: [{t, b, d}] in seconds.
 *
 * Wheel: zoom time around the pointer (shift + wheel: frequency); drag: pan; double click: reset.
 * No dependencies, no network.
 */
(function () {
  "use strict";

  function b64(s) {
    var bin = atob(s), a = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) a[i] = bin.charCodeAt(i);
    return a;
  }

  function niceStep(span, target) {
    var raw = span / Math.max(target, 1), p = Math.pow(10, Math.floor(Math.log10(raw)));
    var steps = [1, 2, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * p >= raw) return steps[i] * p;
    return 10 * p;
  }

  function fmt(v, step) {
    var digits = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
    return v.toFixed(Math.min(digits, 3));
  }

  function Viewer(root) {
    var d = JSON.parse(root.querySelector("script[type='application/json']").textContent);
    this.root = root;
    this.d = d;
    this.K = d.K;
    this.T = d.T;
    this.spec = b64(d.spec);
    this.imp = b64(d.imp);
    if (this.spec.length !== this.K * this.T || this.imp.length !== this.K * this.T) {
      throw new Error("viewer data has " + this.spec.length + "/" + this.imp.length + " values, expected " + this.K * this.T);
    }
    this.lutSpec = b64(d.lut_spec);
    this.lutImp = b64(d.lut_imp);
    this.canvas = root.querySelector("canvas.afmask-plot");
    this.readout = root.querySelector(".afmask-readout");
    this.modeSel = root.querySelector("select.afmask-mode");
    this.alpha = root.querySelector("input.afmask-alpha");
    this.topp = root.querySelector("input.afmask-topp");
    this.toppLabel = root.querySelector(".afmask-topp-value");
    this.margin = { l: 66, r: 14, t: d.words && d.words.length ? 26 : 10, b: 42 };
    this.layers = {};
    this.reset();
    this.bind();
    this.draw();
  }

  Viewer.prototype.reset = function () {
    this.t0 = 0; this.t1 = this.T; this.k0 = 0; this.k1 = this.K;
  };

  // one offscreen canvas per colouring, T x K pixels, row 0 = the highest bin
  Viewer.prototype.layer = function (name) {
    if (this.layers[name]) return this.layers[name];
    var K = this.K, T = this.T, c = document.createElement("canvas");
    c.width = T; c.height = K;
    var ctx = c.getContext("2d"), img = ctx.createImageData(T, K), px = img.data;
    var spec = this.spec, imp = this.imp, ls = this.lutSpec, li = this.lutImp;
    var cut = name === "top" ? 255 * (1 - this.topp.value / 100) : 0;
    for (var k = 0; k < K; k++) {
      var row = (K - 1 - k) * T;
      for (var t = 0; t < T; t++) {
        var i = k * T + t, o = 4 * (row + t), v;
        if (name === "spec") { v = spec[i]; px[o] = ls[3 * v]; px[o + 1] = ls[3 * v + 1]; px[o + 2] = ls[3 * v + 2]; }
        else if (name === "grey") { v = spec[i]; px[o] = px[o + 1] = px[o + 2] = v; }
        else if (name === "imp") { v = imp[i]; px[o] = li[3 * v]; px[o + 1] = li[3 * v + 1]; px[o + 2] = li[3 * v + 2]; }
        else { // top p %: the selected points in colour, the rest dimmed grey
          v = spec[i];
          if (imp[i] >= cut) { px[o] = ls[3 * v]; px[o + 1] = ls[3 * v + 1]; px[o + 2] = ls[3 * v + 2]; }
          else { px[o] = px[o + 1] = px[o + 2] = Math.round(v * 0.22); }
        }
        px[o + 3] = 255;
      }
    }
    ctx.putImageData(img, 0, 0);
    if (name !== "top") this.layers[name] = c;
    return c;
  };

  Viewer.prototype.size = function () {
    var c = this.canvas, dpr = window.devicePixelRatio || 1;
    var w = Math.max(320, c.clientWidth || 900), h = Math.max(200, c.clientHeight || 420);
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
      c.width = Math.round(w * dpr); c.height = Math.round(h * dpr);
    }
    return { w: w, h: h, dpr: dpr };
  };

  Viewer.prototype.plotRect = function (s) {
    var m = this.margin;
    return { x: m.l, y: m.t, w: s.w - m.l - m.r, h: s.h - m.t - m.b };
  };

  Viewer.prototype.draw = function () {
    var s = this.size(), ctx = this.canvas.getContext("2d"), r = this.plotRect(s), d = this.d;
    ctx.setTransform(s.dpr, 0, 0, s.dpr, 0, 0);
    ctx.clearRect(0, 0, s.w, s.h);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, s.w, s.h);
    ctx.imageSmoothingEnabled = false;
    var sx = this.t0, sy = this.K - this.k1, sw = this.t1 - this.t0, sh = this.k1 - this.k0;
    var mode = this.modeSel ? this.modeSel.value : "overlay";
    if (mode === "overlay") {
      ctx.drawImage(this.layer("grey"), sx, sy, sw, sh, r.x, r.y, r.w, r.h);
      ctx.globalAlpha = this.alpha ? this.alpha.value / 100 : 0.6;
      ctx.drawImage(this.layer("imp"), sx, sy, sw, sh, r.x, r.y, r.w, r.h);
      ctx.globalAlpha = 1;
    } else {
      ctx.drawImage(this.layer(mode), sx, sy, sw, sh, r.x, r.y, r.w, r.h);
    }
    ctx.strokeStyle = "#333";
    ctx.lineWidth = 1;
    ctx.strokeRect(r.x + 0.5, r.y + 0.5, r.w - 1, r.h - 1);
    this.axes(ctx, r);
    this.words(ctx, r);
    this.canvas.setAttribute("data-drawn", String(Number(this.canvas.getAttribute("data-drawn") || 0) + 1));
  };

  Viewer.prototype.axes = function (ctx, r) {
    var d = this.d;
    ctx.fillStyle = "#222";
    ctx.font = "12px sans-serif";
    // time (s)
    var a = this.t0 * d.frame_s, b = this.t1 * d.frame_s, step = niceStep(b - a, r.w / 90);
    ctx.textAlign = "center"; ctx.textBaseline = "top";
    for (var v = Math.ceil(a / step) * step; v <= b + 1e-9; v += step) {
      var x = r.x + (v - a) / (b - a) * r.w;
      ctx.fillRect(Math.round(x), r.y + r.h, 1, 5);
      ctx.fillText(fmt(v, step), x, r.y + r.h + 7);
    }
    ctx.fillText("time (s)", r.x + r.w / 2, r.y + r.h + 24);
    // frequency (Hz): bin k is centred at k * bin_hz; the image row of bin k spans [k - 0.5, k + 0.5) * bin_hz
    var fa = (this.k0 - 0.5) * d.bin_hz, fb = (this.k1 - 0.5) * d.bin_hz, fstep = niceStep(fb - fa, r.h / 45);
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    for (var f = Math.ceil(fa / fstep) * fstep; f <= fb + 1e-9; f += fstep) {
      var y = r.y + r.h - (f - fa) / (fb - fa) * r.h;
      ctx.fillRect(r.x - 5, Math.round(y), 5, 1);
      ctx.fillText(fmt(f, fstep), r.x - 7, y);
    }
    ctx.save();
    ctx.translate(14, r.y + r.h / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "center";
    ctx.fillText("frequency (Hz)", 0, 0);
    ctx.restore();
  };

  Viewer.prototype.words = function (ctx, r) {
    var words = this.d.words || [], d = this.d;
    if (!words.length) return;
    var a = this.t0 * d.frame_s, b = this.t1 * d.frame_s;
    ctx.font = "11px sans-serif"; ctx.textAlign = "center"; ctx.textBaseline = "bottom";
    for (var i = 0; i < words.length; i++) {
      var w = words[i], x0 = r.x + (w.b - a) / (b - a) * r.w, x1 = r.x + (w.b + w.d - a) / (b - a) * r.w;
      if (x1 < r.x || x0 > r.x + r.w) continue;
      ctx.fillStyle = "#999";
      ctx.fillRect(Math.max(x0, r.x), r.y - 4, Math.max(1, Math.min(x1, r.x + r.w) - Math.max(x0, r.x)), 2);
      ctx.fillStyle = "#222";
      var cx = (Math.max(x0, r.x) + Math.min(x1, r.x + r.w)) / 2;
      ctx.fillText(w.t, cx, r.y - 6);
    }
  };

  Viewer.prototype.at = function (ev) {
    var box = this.canvas.getBoundingClientRect(), s = { w: box.width, h: box.height };
    var r = this.plotRect(s), x = ev.clientX - box.left, y = ev.clientY - box.top;
    var u = (x - r.x) / r.w, v = 1 - (y - r.y) / r.h;
    return { inside: u >= 0 && u <= 1 && v >= 0 && v <= 1, t: this.t0 + u * (this.t1 - this.t0), k: this.k0 + v * (this.k1 - this.k0), u: u, v: v, r: r };
  };

  Viewer.prototype.clamp = function () {
    var T = this.T, K = this.K, minT = Math.min(8, T), minK = Math.min(8, K);
    var wt = Math.min(T, Math.max(minT, this.t1 - this.t0)), wk = Math.min(K, Math.max(minK, this.k1 - this.k0));
    this.t0 = Math.min(Math.max(0, this.t0), T - wt); this.t1 = this.t0 + wt;
    this.k0 = Math.min(Math.max(0, this.k0), K - wk); this.k1 = this.k0 + wk;
  };

  Viewer.prototype.zoom = function (factor, ct, ck, freq) {
    if (freq) { this.k0 = ck - (ck - this.k0) * factor; this.k1 = ck + (this.k1 - ck) * factor; }
    else { this.t0 = ct - (ct - this.t0) * factor; this.t1 = ct + (this.t1 - ct) * factor; }
    this.clamp();
    this.draw();
  };

  Viewer.prototype.bind = function () {
    var self = this, c = this.canvas, drag = null;
    c.addEventListener("wheel", function (ev) {
      var p = self.at(ev);
      if (!p.inside) return;
      ev.preventDefault();
      self.zoom(Math.exp(ev.deltaY * 0.0015), p.t, p.k, ev.shiftKey);
    }, { passive: false });
    c.addEventListener("mousedown", function (ev) {
      var p = self.at(ev);
      if (p.inside) drag = { x: ev.clientX, y: ev.clientY, t0: self.t0, t1: self.t1, k0: self.k0, k1: self.k1, r: p.r };
    });
    window.addEventListener("mouseup", function () { drag = null; });
    c.addEventListener("mousemove", function (ev) {
      if (drag) {
        var dt = (ev.clientX - drag.x) / drag.r.w * (drag.t1 - drag.t0), dk = (ev.clientY - drag.y) / drag.r.h * (drag.k1 - drag.k0);
        self.t0 = drag.t0 - dt; self.t1 = drag.t1 - dt; self.k0 = drag.k0 + dk; self.k1 = drag.k1 + dk;
        self.clamp();
        self.draw();
      }
      self.hover(ev);
    });
    c.addEventListener("dblclick", function () { self.reset(); self.draw(); });
    var btn = function (sel, fn) { var b = self.root.querySelector(sel); if (b) b.addEventListener("click", fn); };
    btn(".afmask-zoom-in", function () { self.zoom(0.5, (self.t0 + self.t1) / 2, 0, false); });
    btn(".afmask-zoom-out", function () { self.zoom(2, (self.t0 + self.t1) / 2, 0, false); });
    btn(".afmask-reset", function () { self.reset(); self.draw(); });
    if (this.modeSel) this.modeSel.addEventListener("change", function () { self.draw(); });
    if (this.alpha) this.alpha.addEventListener("input", function () { self.draw(); });
    if (this.topp) this.topp.addEventListener("input", function () {
      if (self.toppLabel) self.toppLabel.textContent = self.topp.value + "%";
      if (self.modeSel && self.modeSel.value !== "top") self.modeSel.value = "top";
      self.draw();
    });
    window.addEventListener("resize", function () { self.draw(); });
  };

  Viewer.prototype.hover = function (ev) {
    if (!this.readout) return;
    var p = this.at(ev), d = this.d;
    if (!p.inside) { this.readout.textContent = "\u00a0"; return; }
    var t = Math.min(this.T - 1, Math.max(0, Math.floor(p.t))), k = Math.min(this.K - 1, Math.max(0, Math.floor(p.k)));
    var i = k * this.T + t, db = d.db_lo + this.spec[i] / 255 * (d.db_hi - d.db_lo);
    var top = 100 * (1 - this.imp[i] / 255);
    this.readout.textContent = "t = " + (t * d.frame_s).toFixed(2) + " s (frame " + t + "), f = " + Math.round(k * d.bin_hz) +
      " Hz (bin " + k + "), level " + (db - d.db_hi).toFixed(1) + " dB re the loudest point, importance: top " + Math.max(top, 0).toFixed(1) +
      "% of points" + (top < 50 ? " (small m)" : " (large m)");
  };

  function start() {
    var roots = document.querySelectorAll(".afmask-viewer");
    for (var i = 0; i < roots.length; i++) {
      try {
        roots[i].afmaskViewer = new Viewer(roots[i]);
      } catch (e) {
        var msg = roots[i].querySelector(".afmask-readout");
        if (msg) msg.textContent = "viewer error: " + e.message;
        console.error("afmask viewer: " + e.message);
      }
    }
    window.afmaskViewersReady = true;
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
