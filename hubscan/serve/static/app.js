// hubscan explorer: the few things a server-rendered page cannot do alone.
// Filter selects submit their form on change; Ctrl/Cmd+Enter runs the SQL box.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const select of document.querySelectorAll("form.filters select")) {
    select.addEventListener("change", () => select.form.submit());
  }
  const sql = document.querySelector("form.sql textarea");
  if (sql) {
    sql.addEventListener("keydown", (event) => {
      if ((event.ctrlKey || event.metaKey) && event.key === "Enter") {
        event.preventDefault();
        sql.form.submit();
      }
    });
  }
});
