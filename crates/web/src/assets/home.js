// Start page: focusing or typing in the custom-ports field ticks "Custom
// ports", so a typed list is never silently replaced by the common test.
// (Without JavaScript the server runs a typed list as a custom test.)
'use strict';
(() => {
  const field = document.getElementById('custom-ports');
  const radio = document.getElementById('kind-custom');
  if (!field || !radio) return;
  const choose = () => { radio.checked = true; };
  field.addEventListener('focus', choose);
  field.addEventListener('input', choose);
})();
