// The series page's chart: the figure the server built, drawn by the local plotly.js.
(function () {
  const source = document.getElementById("forecast-figure");
  if (!source) return;
  const fig = JSON.parse(source.textContent);
  Plotly.newPlot("forecast-chart", fig.data, fig.layout, {responsive: true, displaylogo: false});
})();
