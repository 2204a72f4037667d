// Footfall's tracker. The server builds each variant from this file (src/web/tracker.rs):
// lines between `//#if FEATURE` and `//#endif` stay only in variants with that feature,
// comment lines and indentation are dropped, and FEATURES becomes the variant's feature
// list. Keep statements ending in `;` so the lines can be joined.
!function(){
try{
var w=window,d=document,l=location,s=d.currentScript,q=[],on,api,dom,last,fetchOk=w.fetch;
var A=function(a){return s&&s.getAttribute(a)};
// A feature is on when the variant has it, or its data- attribute is on the script tag.
on=function(f){return FEATURES.indexOf(" "+f+" ")>=0||!!s&&s.hasAttribute("data-"+f)};
api=A("data-api")||(s?new URL(s.src).origin:"")+"/api/event";
dom=A("data-domain")||l.hostname;
function skip(){
try{if(localStorage.footfall_ignore=="true")return 1}catch(e){}
if(l.protocol=="file:"||/^localhost$|^127(\.\d+){3}$|^\[::1\]$/.test(l.hostname)&&!on("include-localhost"))return 1;
//#if exclusions
var x=(A("data-exclude")||"").split(","),i=0,p=l.pathname;
for(;i<x.length;i++)if(x[i]&&RegExp("^"+x[i].trim().replace(/[.+?^${}()|[\]\\]/g,"\\$&").replace(/\*/g,".*")+"$").test(p))return 1;
//#endif
}
function send(n,o){
try{
o=o||{};
var cb=o.callback,b;
if(skip()){cb&&cb();return}
b={n:n,u:o.u||o.url||l.href,d:dom,r:d.referrer||null};
if(o.props)b.p=o.props;
if(o.revenue)b.$=o.revenue;
if(o.interactive===false)b.i=false;
//#if hash
if(on("hash"))b.h=1;
//#endif
//#if engagement
if(n=="engagement"){b.sd=o.sd;b.e=o.e}
//#endif
b=JSON.stringify(b);
if(fetchOk)fetch(api,{method:"POST",headers:{"Content-Type":"text/plain"},keepalive:true,body:b}).then(function(r){cb&&cb({status:r.status})},function(e){cb&&cb({error:e})});
else navigator.sendBeacon&&navigator.sendBeacon(api,b);
}catch(e){}
}
//#if engagement
// Engaged time counts while the page is visible and focused; scroll depth is the
// deepest point seen, in percent of the page height.
var since=0,spent=0,deep=0,sent=-1,H=function(){var b=d.body||{},e=d.documentElement||{};return Math.max(b.scrollHeight||0,e.scrollHeight||0,e.clientHeight||0)};
function seen(){var h=H();deep=Math.max(deep,Math.min(100,Math.round((w.scrollY+w.innerHeight)/h*100)))}
function tick(){
var v=d.visibilityState=="visible"&&d.hasFocus();
if(v&&!since)since=Date.now();
if(!v&&since){spent+=Date.now()-since;since=0}
}
function report(){
tick();
var t=spent+(since?Date.now()-since:0);
if(last&&(deep>sent||t>=3000)){sent=deep;send("engagement",{u:last.u,sd:deep,e:t});spent=0;since=since&&Date.now()}
}
if(on("engagement")){
d.addEventListener("scroll",seen,{passive:true});
d.addEventListener("visibilitychange",function(){d.visibilityState=="hidden"?report():tick()});
w.addEventListener("focus",tick);w.addEventListener("blur",tick);w.addEventListener("pagehide",report);
}
//#endif
function page(o){
var p=l.pathname;
//#if hash
if(on("hash"))p+=l.hash;
//#endif
if(last&&last.p==p)return;
//#if engagement
if(on("engagement")){report();spent=0;since=0;deep=0;sent=-1;d.readyState!="loading"&&seen();tick()}
//#endif
last={p:p,u:l.href};
send("pageview",o);
}
function api_(n,o){try{n=="pageview"?(last=0,page(o)):send(n,o)}catch(e){}}
// Calls queued before the script loaded, under either name.
[w.footfall,w.plausible].forEach(function(f){f&&f.q&&(q=q.concat([].slice.call(f.q)))});
w.footfall=w.plausible=api_;
//#if manual
if(!on("manual")){
//#endif
var h=history,wrap=function(k){var f=h[k];h[k]=function(){var r=f.apply(this,arguments);try{page()}catch(e){}return r}};
wrap("pushState");wrap("replaceState");
w.addEventListener("popstate",function(){page()});
//#if hash
on("hash")&&w.addEventListener("hashchange",function(){page()});
//#endif
page();
//#if manual
}
//#endif
//#if 404
on("404")&&send("404",{props:{path:l.pathname}});
//#endif
//#if outbound-links file-downloads tagged-events
// Clicks on links and tagged elements (middle clicks too).
var click=function(e){
try{
if(e.type=="auxclick"&&e.button!=1)return;
for(var t=e.target,a,g,k=0,c,m,pr={};t&&k<4;t=t.parentNode,k++){if(!a&&t.tagName=="A"&&t.href)a=t;if(!g&&/(footfall|plausible)-event-name=/.test(t.className))g=t}
//#if tagged-events
if(g&&on("tagged-events")){
c=(g.className.baseVal||g.className).split(" ");
for(k=0;k<c.length;k++)if(m=c[k].match(/^(?:footfall|plausible)-event-(.+)=(.+)$/))m[1]=="name"?n=m[2].replace(/\+/g," "):pr[m[1]]=m[2].replace(/\+/g," ");
if(a)pr.url=a.href;
return send(n,{props:pr});
}
//#endif
if(!a)return;
//#if outbound-links
if(on("outbound-links")&&a.host&&a.host!=l.host)return send("Outbound Link: Click",{props:{url:a.href}});
//#endif
//#if file-downloads
if(on("file-downloads")&&/\.(pdf|xlsx?|docx?|txt|rtf|csv|exe|key|pps|pptx?|7z|pkg|rar|gz|zip|avi|mov|mp4|mpeg|wmv|midi|mp3|wav|wma|dmg)$/i.test(a.pathname))return send("File Download",{props:{url:a.href.split("?")[0]}});
//#endif
}catch(e){}
},n;
d.addEventListener("click",click,true);d.addEventListener("auxclick",click,true);
//#endif
q.forEach(function(a){api_(a[0],a[1])});
}catch(e){}
}();
