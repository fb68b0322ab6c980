// A tiny web app: `/` greets, `/health` answers ok. Listens on $PORT.
const http = require("http");

const port = Number(process.env.PORT || 3000);
const greeting = process.env.GREETING || "Hello from Phased";

http
  .createServer((req, res) => {
    if (req.url === "/health") {
      res.writeHead(200, { "content-type": "text/plain" });
      return res.end("ok\n");
    }
    res.writeHead(200, { "content-type": "text/html" });
    res.end(`<h1>${greeting}</h1>\n`);
  })
  .listen(port, () => console.log(`listening on ${port}`));
