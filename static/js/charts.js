/* Charts of the staff pages, drawn with the vendored Chart.js from data the page embeds
   with json_script. No network access needed. */
(function () {
  "use strict";

  if (typeof Chart === "undefined") {
    return;
  }
  Chart.defaults.animation = false;
  Chart.defaults.font.family =
    'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif';
  Chart.defaults.color = "#52606d";
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.plugins.legend.labels.boxWidth = 12;

  var number = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
  var moneyFigure = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2, minimumFractionDigits: 2 });
  // The business's currency, set by the dashboard's data: every amount says it.
  var currency = "";

  function money(value) {
    return moneyFigure.format(value) + (currency ? "\u00a0" + currency : "");
  }

  function data(id) {
    var node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  function fade(hex, alpha) {
    var h = hex.replace("#", "");
    if (h.length === 3) {
      h = h[0] + h[0] + h[1] + h[1] + h[2] + h[2];
    }
    var n = parseInt(h, 16);
    return "rgba(" + ((n >> 16) & 255) + "," + ((n >> 8) & 255) + "," + (n & 255) + "," + alpha + ")";
  }

  function empty(canvas, text) {
    var box = canvas.parentNode;
    box.classList.add("chart-empty");
    var p = document.createElement("p");
    p.className = "empty";
    p.textContent = text;
    box.replaceChild(p, canvas);
  }

  function draw(id, config, hasData, emptyText) {
    var canvas = document.getElementById(id);
    if (!canvas) {
      return null;
    }
    if (!hasData) {
      empty(canvas, emptyText || "Not enough data yet.");
      return null;
    }
    return new Chart(canvas, config);
  }

  function lineSeries(segments, key) {
    return segments.map(function (s) {
      return {
        label: s.label,
        data: s[key],
        borderColor: s.color,
        backgroundColor: fade(s.color, 0.2),
        pointRadius: 3,
        tension: 0.25,
        spanGaps: true,
      };
    });
  }

  function anyValue(series) {
    return series.some(function (s) {
      return s.data.some(function (v) { return v !== null && v !== undefined; });
    });
  }

  function dashboard(d) {
    currency = d.currency || "";
    var sizes = d.sizes;
    var total = sizes.sizes.reduce(function (a, b) { return a + b; }, 0);
    draw("chart-sizes", {
      type: "bar",
      data: {
        labels: sizes.labels,
        datasets: [
          {
            label: "Share of customers (%)",
            data: sizes.sizes.map(function (n) { return total ? Math.round(1000 * n / total) / 10 : 0; }),
            counts: sizes.sizes,
            backgroundColor: sizes.colors,
          },
          {
            label: "Share of revenue (%)",
            data: sizes.revenue_shares,
            backgroundColor: sizes.colors.map(function (c) { return fade(c, 0.35); }),
            borderColor: sizes.colors,
            borderWidth: 1,
          },
        ],
      },
      options: {
        indexAxis: "y",
        scales: { x: { beginAtZero: true, ticks: { callback: function (v) { return v + "%"; } } } },
        plugins: {
          tooltip: {
            callbacks: {
              label: function (ctx) {
                var extra = ctx.dataset.counts ? " (" + number.format(ctx.dataset.counts[ctx.dataIndex]) + " customers)" : "";
                return ctx.dataset.label.replace(" (%)", "") + ": " + ctx.parsed.x + "%" + extra;
              },
            },
          },
        },
      },
    }, total > 0, "No segments yet.");

    var scatter = d.scatter.datasets.map(function (s) {
      return {
        label: s.label,
        data: s.data,
        backgroundColor: fade(s.color, 0.55),
        borderColor: s.color,
        pointRadius: 2.5,
        pointHoverRadius: 5,
      };
    });
    draw("chart-scatter", {
      type: "scatter",
      data: { datasets: scatter },
      options: {
        scales: {
          x: { title: { display: true, text: "Days since the last purchase" }, beginAtZero: true },
          y: { type: "logarithmic", title: { display: true, text: "Total spent" + (currency ? " (" + currency + ")" : "") } },
        },
        plugins: {
          tooltip: {
            callbacks: {
              label: function (ctx) {
                return ctx.dataset.label + ": " + number.format(ctx.parsed.x) + " days ago, spent " + money(ctx.parsed.y);
              },
            },
          },
        },
      },
    }, scatter.length > 0, d.scatter.empty || "No purchases yet.");

    var trends = d.trends;
    var revenue = lineSeries(trends.segments, "revenue");
    draw("chart-revenue", {
      type: "line",
      data: { labels: trends.labels, datasets: revenue },
      options: {
        scales: { y: { beginAtZero: true, title: { display: !!currency, text: "Revenue (" + currency + ")" }, ticks: { callback: function (v) { return number.format(v); } } } },
        plugins: { tooltip: { callbacks: { label: function (ctx) { return ctx.dataset.label + ": " + money(ctx.parsed.y); } } } },
      },
    }, anyValue(revenue), "Revenue per segment appears after the first segmentation run.");

    var rating = lineSeries(trends.segments, "rating");
    draw("chart-satisfaction", {
      type: "line",
      data: { labels: trends.labels, datasets: rating },
      options: { scales: { y: { min: 1, max: 5, title: { display: true, text: "Average rating (1-5)" } } } },
    }, anyValue(rating), "Ratings per segment appear once customers have given feedback.");

    var track = d.predictions || [];
    draw("chart-predictions", {
      type: "bar",
      data: {
        labels: track.map(function (p) { return p.as_of; }),
        datasets: [
          { label: "Predicted", data: track.map(function (p) { return p.predicted; }), backgroundColor: fade("#2563eb", 0.35), borderColor: "#2563eb", borderWidth: 1 },
          { label: "Actual", data: track.map(function (p) { return p.actual; }), backgroundColor: "#059669" },
        ],
      },
      options: {
        scales: { y: { beginAtZero: true, title: { display: true, text: "Repeat purchases in 30 days" } } },
        plugins: { tooltip: { callbacks: { label: function (ctx) {
          return ctx.dataset.label + ": " + (ctx.parsed.y === null ? "still to come" : number.format(Math.round(ctx.parsed.y)));
        } } } },
      },
    }, track.length > 0, "Predictions appear after a segmentation run with enough repeat customers.");

    var moves = d.transitions;
    var movesCanvas = document.getElementById("chart-transitions");
    if (movesCanvas) {
      // One bar per segment of origin: the chart grows with them instead of stretching one.
      movesCanvas.parentNode.style.height = Math.max(180, 70 * moves.labels.length + 110) + "px";
    }
    draw("chart-transitions", {
      type: "bar",
      data: {
        labels: moves.labels,
        datasets: moves.datasets.map(function (s) {
          return { label: "→ " + s.label, data: s.data, backgroundColor: s.color };
        }),
      },
      options: {
        indexAxis: "y",
        scales: {
          x: { stacked: true, beginAtZero: true, title: { display: true, text: "Customers" } },
          y: { stacked: true, title: { display: true, text: "Segment before the run" } },
        },
        plugins: { tooltip: { callbacks: { label: function (ctx) { return ctx.dataset.label + ": " + number.format(ctx.parsed.x); } } } },
      },
    }, moves.datasets.length > 0, moves.empty || "Movements appear after the first segmentation run.");
  }

  function segment(d) {
    var t = d.trend;
    var monthly = t.months.length > 0;
    var labels = monthly ? t.months : t.runs;
    var rating = monthly ? t.rating : t.run_rating;
    var nps = monthly ? t.nps : t.run_nps;
    var has = rating.concat(nps).some(function (v) { return v !== null; });
    draw("chart-segment-satisfaction", {
      type: "line",
      data: {
        labels: labels,
        datasets: [
          { label: "Average rating (1-5)", data: rating, yAxisID: "y", borderColor: d.color, backgroundColor: fade(d.color, 0.2), spanGaps: true, tension: 0.25 },
          { label: "NPS (−100 to 100)", data: nps, yAxisID: "nps", borderColor: "#52606d", borderDash: [5, 4], spanGaps: true, tension: 0.25 },
        ],
      },
      options: {
        scales: {
          y: { min: 1, max: 5, position: "left", title: { display: true, text: "Rating" } },
          nps: { min: -100, max: 100, position: "right", grid: { drawOnChartArea: false }, title: { display: true, text: "NPS" } },
        },
      },
    }, has, "No feedback from this segment yet.");

    draw("chart-segment-size", {
      type: "line",
      data: {
        labels: t.runs,
        datasets: [{ label: "Customers", data: t.run_size, borderColor: d.color, backgroundColor: fade(d.color, 0.25), fill: true, tension: 0.25 }],
      },
      options: { plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true } } },
    }, t.run_size.length > 0, "Sizes appear after the first segmentation run.");
  }

  var dash = data("dashboard-data");
  if (dash) {
    dashboard(dash);
  }
  var seg = data("segment-data");
  if (seg) {
    segment(seg);
  }
})();
